"""A workspace: one folder holding the config, the state store and everything the loop writes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .config import Config, example_config_text, load_config
from .errors import WorkspaceError
from .store import STATE_FILE, Store

CONFIG_FILE = "mturk-tune.toml"
MARKETPLACE_FILE = "marketplace.db"


@dataclass
class Workspace:
    root: Path
    config: Config

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def marketplace_db(self) -> Path:
        """State of the embedded marketplace used by the `local` endpoint."""
        return self.root / MARKETPLACE_FILE

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @cached_property
    def store(self) -> Store:
        return Store.open(self.state_path)


def init_workspace(root: Path, model: str | None = None, config_text: str | None = None) -> Workspace:
    """Create (or re-open) a workspace; an existing config is never overwritten."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / CONFIG_FILE
    if not config_path.exists():
        text = config_text if config_text is not None else example_config_text()
        config_path.write_text(text, encoding="utf-8")
        if model is not None:
            _set_model(config_path, model)
    config = load_config(config_path)
    Store.create(root / STATE_FILE, model=config.model.name).close()
    return Workspace(root=root, config=config)


def _set_model(config_path: Path, model: str) -> None:
    lines = config_path.read_text(encoding="utf-8").splitlines()
    in_model = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            in_model = line.strip() == "[model]"
        elif in_model and line.startswith("name ="):
            lines[i] = 'name = "' + model.replace("\\", "\\\\").replace('"', '\\"') + '"'
            break
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def open_workspace(root: Path) -> Workspace:
    root = Path(root)
    if not (root / STATE_FILE).exists():
        raise WorkspaceError(f"{root} is not a workspace (no {STATE_FILE}): run 'mturk-tune init {root}' first")
    return Workspace(root=root, config=load_config(root / CONFIG_FILE))
