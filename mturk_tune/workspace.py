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


def init_workspace(
    root: Path, model: str | None = None, config_text: str | None = None, settings: dict[str, dict] | None = None
) -> Workspace:
    """Create (or re-open) a workspace; an existing config is never overwritten.

    `settings` ({section: {key: value}}) replaces default values in the written config file. The
    new config is checked before it is put in place, so a bad value leaves nothing to clean up.
    """
    root = Path(root).expanduser().resolve()  # absolute: the store records checkpoint paths
    config_path = root / CONFIG_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not config_path.exists():
            draft = root / (CONFIG_FILE + ".new")
            draft.write_text(config_text if config_text is not None else example_config_text(), encoding="utf-8")
            settings = {section: dict(values) for section, values in (settings or {}).items()}
            if model is not None:
                settings.setdefault("model", {})["name"] = model
            for section, values in settings.items():
                for key, value in values.items():
                    set_config_value(draft, section, key, value)
            try:
                load_config(draft)
            except Exception:
                draft.unlink()
                raise
            draft.replace(config_path)
        config = load_config(config_path)
        Store.create(root / STATE_FILE, model=config.model.name).close()
    except OSError as exc:
        raise WorkspaceError(f"cannot create a workspace in {root}: {exc.strerror or exc}") from None
    return Workspace(root=root, config=config)


def set_config_value(config_path: Path, section: str, key: str, value: object) -> None:
    """Set one key in a config file written by `example_config_text`, keeping its comments."""
    from .config import _toml_value

    lines = config_path.read_text(encoding="utf-8").splitlines()
    in_section = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            if in_section:  # key absent from the section: add it at the section's end
                lines.insert(i, f"{key} = {_toml_value(value)}")
                break
            in_section = line.strip() == f"[{section}]"
        elif in_section and (line.startswith(f"{key} =") or line.startswith(f"# {key} = ")):
            lines[i] = f"{key} = {_toml_value(value)}"
            break
    else:
        if not in_section:
            lines += ["", f"[{section}]"]
        lines.append(f"{key} = {_toml_value(value)}")
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def open_workspace(root: Path) -> Workspace:
    root = Path(root).expanduser().resolve()  # absolute: the store records checkpoint paths
    if not (root / STATE_FILE).exists():
        raise WorkspaceError(f"{root} is not a workspace (no {STATE_FILE}): run 'mturk-tune init {root}' first")
    return Workspace(root=root, config=load_config(root / CONFIG_FILE))
