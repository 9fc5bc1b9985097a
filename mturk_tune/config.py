"""Workspace configuration: TOML into frozen dataclasses.

Precedence, highest first: a CLI option, an environment variable ``MTURK_TUNE_<SECTION>_<KEY>``,
the workspace's ``mturk-tune.toml``, the defaults below. Every key is documented in
``config.example.toml``; ``tests/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "MTURK_TUNE_"
ENDPOINTS = ("sandbox", "production", "local")


def opt(default: Any, doc: str) -> Any:
    """A config key with its documentation; config.example.toml is rendered from these."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class ModelSection:
    name: str = opt("gpt2", "Model of round 0: a Hugging Face hub name, a local directory, or builtin:tiny (offline).")


@dataclass(frozen=True)
class GenerateSection:
    samples_per_prompt: int = opt(2, "Samples generated per prompt (-n).")
    max_new_tokens: int = opt(40, "Longest completion, in tokens.")
    seed: int = opt(0, "Random seed; the same seed and model give the same samples.")
    batch_size: int = opt(64, "Prompts sampled together; lower it if memory runs out.")
    temperature: float = opt(1.0, "Sampling temperature.")
    top_p: float = opt(0.95, "Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.")


@dataclass(frozen=True)
class PublishSection:
    endpoint: str = opt(
        "sandbox",
        "Where HITs go: sandbox (default), local (the embedded marketplace in the workspace), "
        "production (real money; needs --production too) or an http(s) URL of a marketplace server.",
    )
    region: str = opt("us-east-1", "AWS region of the MTurk endpoint (MTurk lived in us-east-1 only).")
    items_per_hit: int = opt(5, "Texts rated in one HIT.")
    assignments: int = opt(3, "Workers who rate each HIT (MaxAssignments).")
    reward: str = opt("0.05", "Dollars paid per assignment, as a string with at most two decimals.")
    lifetime: int = opt(86400, "Seconds a HIT stays available to workers.")
    assignment_duration: int = opt(1800, "Seconds a worker has to finish an accepted assignment.")
    auto_approval_delay: int = opt(259200, "Seconds after submission before MTurk approves an assignment by itself.")
    title: str = opt("Rate short texts written by a language model", "HIT title workers see in the list.")
    description: str = opt(
        "Read a few short texts and rate how good each one is on a 1-5 scale.", "HIT description workers see."
    )
    keywords: str = opt("rating, text, language, quick", "Comma-separated search keywords of the HIT.")
    template: str = opt("likert.html", "HIT page template: a name in hit_templates/ or a path to your own Jinja2 file.")
    max_cost: str = opt("25.00", "Hard cap in dollars (rewards plus MTurk fees) for one publish; larger batches are refused.")
    gold_rate: float = opt(0.0, "Share of each HIT given to gold/control items with known ratings (0 turns them off).")
    gold_file: str = opt("", "JSONL of gold items ({\"id\", \"text\", \"label\"} per line) mixed in at gold_rate.")
    concurrency: int = opt(4, "API calls in flight at once during publish and collect.")


@dataclass(frozen=True)
class AggregateSection:
    method: str = opt("mean", "Aggregation method for per-item scores (see 'mturk-tune aggregate --help').")


@dataclass(frozen=True)
class CrowdSection:
    workers: int = opt(9, "Simulated workers answering HITs on the local marketplace (demo and loop).")
    seed: int = opt(0, "Seed of the simulated crowd.")
    mix: Mapping[str, float] = opt(
        {"careful": 1.0}, "Share of each simulated worker kind: careful, noisy, biased, spammer, straightliner, ..."
    )
    preference: str = opt(
        "sentiment",
        "Hidden preference the simulated crowd rates by: sentiment, target_words:W1,W2[@SHARE], "
        "length_band:MIN-MAX or module:function.",
    )


@dataclass(frozen=True)
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    publish: PublishSection = field(default_factory=PublishSection)
    aggregate: AggregateSection = field(default_factory=AggregateSection)
    crowd: CrowdSection = field(default_factory=CrowdSection)
    # Validated by the engines that own them (TuneConfig.from_dict, QualityPolicy.from_dict),
    # so the rules for those keys live in one place.
    tune: Mapping[str, Any] = field(default_factory=dict)
    quality: Mapping[str, Any] = field(default_factory=dict)


_SECTIONS = {f.name: f for f in fields(Config)}
_FREE_SECTIONS = ("tune", "quality")


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, "a table")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check one value against a field type; ints are accepted where numbers are."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool, float):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if typing.get_origin(tp) in (Mapping, dict) or tp is Mapping:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def _from_env_string(raw: str, tp: Any, where: str) -> Any:
    try:
        if tp is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {raw!r}") from None
    return raw


def _build_section(cls: type, values: Mapping[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key '{key}' in [{section}]; known keys: {', '.join(sorted(known))}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{source}: [{section}] {k}") for k, v in values.items()}
    # Environment variables override the file, key by key.
    for key in known:
        env_name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
        if env_name in os.environ and typing.get_origin(hints[key]) is None and hints[key] is not Mapping:
            kwargs[key] = _from_env_string(os.environ[env_name], hints[key], env_name)
    return cls(**kwargs)


def _engine_env_overrides(section: str) -> dict[str, Any]:
    """MTURK_TUNE_<SECTION>_<KEY> for an engine's keys, read as TOML values (5, 0.9, true, "text")."""
    overrides = {}
    for f in fields(_engine_sections()[section]):
        env_name = f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
        if env_name in os.environ:
            raw = os.environ[env_name]
            try:
                overrides[f.name] = tomllib.loads(f"value = {raw}")["value"]
            except tomllib.TOMLDecodeError:
                overrides[f.name] = raw  # a bare word is a string
    return overrides


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """Build a Config from parsed TOML, naming the key and the fix on any error."""
    for section in data:
        if section not in _SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{section}]; known sections: {', '.join(sorted(_SECTIONS))}"
            )
    kwargs: dict[str, Any] = {}
    for name, f in _SECTIONS.items():
        values = data.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{name}' must be a table like [{name}]")
        if name in _FREE_SECTIONS:
            kwargs[name] = {**values, **_engine_env_overrides(name)}
        else:
            kwargs[name] = _build_section(f.default_factory().__class__, values, source, name)  # type: ignore[misc]
    config = Config(**kwargs)
    validate(config, source)
    return config


def validate(config: Config, source: str = "config") -> None:
    """Cross-field checks that types alone cannot express."""
    from .money import parse_dollars

    p = config.publish
    if p.endpoint not in ENDPOINTS and not p.endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"{source}: [publish] endpoint must be sandbox, production, local or an http(s) URL, got {p.endpoint!r}"
        )
    # MTurk's own bounds, checked here so a bad value stops before any HIT is claimed or paid for.
    bounds = {
        "items_per_hit": (1, 1000), "assignments": (1, 1_000_000), "lifetime": (30, 31_536_000),
        "assignment_duration": (30, 31_536_000), "auto_approval_delay": (0, 2_592_000), "concurrency": (1, 64),
    }
    for key, (low, high) in bounds.items():
        if not low <= getattr(p, key) <= high:
            raise ConfigError(f"{source}: [publish] {key} must be between {low} and {high}, got {getattr(p, key)}")
    if p.endpoint.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        if not urlsplit(p.endpoint).hostname or any(ch.isspace() for ch in p.endpoint):
            raise ConfigError(f"{source}: [publish] endpoint {p.endpoint!r} has no valid host; write http://HOST:PORT")
    parse_dollars(p.reward, f"{source}: [publish] reward")
    parse_dollars(p.max_cost, f"{source}: [publish] max_cost")
    if not 0.0 <= p.gold_rate < 1.0:
        raise ConfigError(f"{source}: [publish] gold_rate must be in [0, 1), got {p.gold_rate}")
    from .preferences import load_preference

    try:
        load_preference(config.crowd.preference)
    except ConfigError as exc:
        raise ConfigError(f"{source}: [crowd] preference: {exc}") from None
    for name, cls in _engine_sections().items():
        try:
            cls.from_dict(dict(getattr(config, name)))
        except ConfigError as exc:
            raise ConfigError(f"{source}: [{name}] {exc}") from None
    g = config.generate
    for key in ("samples_per_prompt", "max_new_tokens", "batch_size"):
        if getattr(g, key) < 1:
            raise ConfigError(f"{source}: [generate] {key} must be at least 1, got {getattr(g, key)}")


def load_config(path: Path | None) -> Config:
    """Read a TOML config; a missing path gives the defaults (plus environment overrides)."""
    if path is None or not Path(path).exists():
        return config_from_dict({}, source="defaults")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax or copy config.example.toml") from None
    return config_from_dict(data, source=str(path))


def replace(config: Config, section: str, **overrides: Any) -> Config:
    """Apply CLI options (already typed by Click) over one section; None means 'not given'."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    new_section = dataclasses.replace(getattr(config, section), **given)
    new_config = dataclasses.replace(config, **{section: new_section})
    validate(new_config, "command line")
    return new_config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return '""'
    return _toml_value(str(value))


def _engine_sections() -> dict[str, type]:
    """Sections whose keys belong to an engine's own dataclass (one place for each fact)."""
    from .quality import QualityPolicy
    from .tuning import TuneConfig

    return {"tune": TuneConfig, "quality": QualityPolicy}


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation, read from the class source where it is declared.

    Engines document a field with a trailing comment or an attribute docstring; reading those
    keeps the config file's comments and the code in one place.
    """
    import ast
    import inspect
    import textwrap

    docs = {f.name: f.metadata["doc"] for f in fields(cls) if "doc" in f.metadata}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # pragma: no cover - source not available (zipped install)
        return docs
    lines = source.splitlines()
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    for node, following in zip(body, body[1:] + [None]):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        if name in docs:
            continue
        line = lines[node.end_lineno - 1]
        if "  # " in line:
            docs[name] = line.split("  # ", 1)[1].strip()
        elif (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
              and isinstance(following.value.value, str)):
            docs[name] = " ".join(following.value.value.split())
    return docs


def example_config_text() -> str:
    """The documented default config; `init` writes it and config.example.toml is exactly this."""
    lines = [
        "# mturk-tune workspace configuration.",
        "# Precedence: command-line option > environment variable MTURK_TUNE_<SECTION>_<KEY> > this file > default.",
        "# Every key is shown with its default value.",
    ]
    engine = _engine_sections()
    for name, f in _SECTIONS.items():
        cls = engine.get(name) or f.default_factory().__class__  # type: ignore[misc]
        lines += ["", f"[{name}]"]
        defaults = cls()
        docs = field_docs(cls)
        for sub in fields(cls):
            doc = docs.get(sub.name) or sub.name.replace("_", " ").capitalize() + "."
            lines.append(f"# {doc}")
            value = getattr(defaults, sub.name)
            if value is None:
                lines.append(f"# {sub.name} = (unset)")
            else:
                lines.append(f"{sub.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
