"""HIT page templates (Jinja2, autoescaped). Installed as the package mturk_tune.hit_templates."""
