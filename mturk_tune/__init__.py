"""mturk-tune: turn crowd judgments collected through the MTurk API into a better language model."""

__version__ = "0.1.0"
