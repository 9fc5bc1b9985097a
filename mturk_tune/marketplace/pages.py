"""The worker-facing pages of the marketplace server (HIT list, task frame, messages).

Rendered with Jinja2 autoescaping; no script at all, so the pages run under a CSP without
'unsafe-inline' scripts. The HIT's own HTML is not rendered here: the server sends it
as-is inside a sandboxed frame.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
header { background: #232f3e; color: #fff; padding: .6rem 1rem; display: flex; justify-content: space-between; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
main { max-width: 60rem; margin: 1rem auto; padding: 0 1rem; }
table { width: 100%; border-collapse: collapse; background: #fff; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e1e5ea; vertical-align: top; }
.bar { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; background: #fff; padding: .6rem 1rem;
       border: 1px solid #e1e5ea; border-radius: 6px; }
.bar form { margin: 0; }
button { font-size: 1rem; padding: .35rem 1rem; cursor: pointer; }
iframe { width: 100%; height: 78vh; border: 1px solid #c3cbd6; background: #fff; margin-top: .6rem; }
.note { color: #5a6472; }
.error { background: #fdecea; border: 1px solid #f5c2c0; padding: .8rem 1rem; border-radius: 6px; }
"""

_TEMPLATES = {
    "base.html": """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}HITs{% endblock %} - mturk-tune marketplace</title><style>""" + _STYLE + """</style></head>
<body><header><a href="/">mturk-tune marketplace</a>{% if worker_id %}<span>Worker {{ worker_id }}</span>{% endif %}</header>
<main>{% block main %}{% endblock %}</main></body></html>""",
    "hits.html": """{% extends "base.html" %}{% block main %}
{% if in_progress %}<h2>Your HITs in progress</h2><table><tr><th>HIT</th><th>Due</th><th></th></tr>
{% for a in in_progress %}<tr><td>{{ a.title }}</td><td>{{ a.deadline }}</td>
<td><a href="{{ a.link }}">Continue</a></td></tr>{% endfor %}</table>{% endif %}
<h2>Available HITs</h2>
{% if hits %}<table><tr><th>Title</th><th>Reward</th><th>Time allotted</th><th>Available</th><th></th></tr>
{% for h in hits %}<tr><td><strong>{{ h.Title }}</strong><br><span class="note">{{ h.Description }}</span></td>
<td>${{ h.Reward }}</td><td>{{ h.minutes }} min</td><td>{{ h.NumberOfAssignmentsAvailable }}</td>
<td><a href="{{ h.link }}">Preview</a></td></tr>{% endfor %}</table>
{% else %}<p class="note">No HITs are available to you right now.</p>{% endif %}
{% if submitted %}<h2>Submitted recently</h2><table><tr><th>Assignment</th><th>Status</th><th>Submitted</th></tr>
{% for a in submitted %}<tr><td>{{ a.AssignmentId }}</td><td>{{ a.AssignmentStatus }}</td><td>{{ a.SubmitTime }}</td></tr>
{% endfor %}</table>{% endif %}
{% endblock %}""",
    "task.html": """{% extends "base.html" %}{% block title %}{{ hit.Title }}{% endblock %}{% block main %}
<div class="bar"><div><strong>{{ hit.Title }}</strong><br><span class="note">{{ hit.Description }}</span></div>
<div>Reward ${{ hit.Reward }}</div>
{% if working %}<div>Submit by {{ deadline }}</div>
<form method="post" action="/return"><input type="hidden" name="assignmentId" value="{{ assignment_id }}">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Return</button></form>
{% else %}<form method="post" action="/accept"><input type="hidden" name="hitId" value="{{ hit.HITId }}">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Accept</button></form>
<span class="note">Preview: accept the HIT to work on it.</span>{% endif %}
</div>
<iframe src="{{ frame_src }}" title="HIT" sandbox="allow-scripts allow-forms allow-top-navigation-by-user-activation"
 referrerpolicy="no-referrer"></iframe>
{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block title %}{{ heading }}{% endblock %}{% block main %}
<h2>{{ heading }}</h2><div class="{{ 'error' if error else 'note' }}"><p>{{ message }}</p></div>
<p><a href="/" target="_top">Back to the HIT list</a></p>{% endblock %}""",
}

_env = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True))


def render(name: str, **context: object) -> bytes:
    return _env.get_template(name).render(**context).encode("utf-8")
