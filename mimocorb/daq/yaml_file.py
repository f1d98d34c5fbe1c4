"""Reading the YAML files of a setup: UTF-8 text, and no key given twice in one mapping.

Plain YAML keeps the last of two equal keys silently (``RB_assign: {RB_1: read, RB_1:
write}`` would mean "write"; a second ``Functions:`` would replace the first); here that
is an error naming the key path and both lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, where: str, first: int, second: int):
        super().__init__(
            f"{where}: appears twice in one mapping (lines {first} and {second}); YAML would keep "
            f"only the last one, so this is refused"
        )
        self.where = where


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, naming its key path.

    The composer passes each node its parent and its index (the key node in a mapping,
    the position in a list); the loader keeps that path while composing.
    """

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._path: list[Any] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        step = index.value if isinstance(index, yaml.ScalarNode) else index if isinstance(index, int) else None
        if step is not None:
            self._path.append(step)
        try:
            return super().compose_node(parent, index)
        finally:
            if step is not None:
                self._path.pop()

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple, Any] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            k = (key.tag, key.value)  # 1 and '1' are different keys
            if k in seen:
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in [*self._path, key.value])
                raise _DuplicateKey(where.lstrip("."), seen[k].start_mark.line + 1, key.start_mark.line + 1)
            seen[k] = key
        return node


def read_yaml(path: Path) -> tuple[Any, Optional[str]]:
    """(data, None), or (None, the problem) for a file that is missing or not valid UTF-8 YAML.

    The problem is ``"not found"`` for a missing file, else a sentence naming what is wrong
    (with the key path and lines for a key given twice)."""
    try:
        raw = Path(path).read_bytes()
        return yaml.load(raw.decode("utf-8"), Loader=_StrictLoader), None
    except FileNotFoundError:
        return None, "not found"
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} in line {line} ({exc.reason}); save it as UTF-8"
    except _DuplicateKey as exc:
        return None, str(exc)
    except yaml.YAMLError as exc:
        return None, f"not valid YAML: {exc}"
    except OSError as exc:
        return None, f"cannot be read: {exc}"


__all__ = ["read_yaml"]
