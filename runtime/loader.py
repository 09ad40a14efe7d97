"""Loading one artifact entry from its own files into something that runs.

    lk = load_entry(DIR, manifest_entry, launcher="cpu", target="cpu")
    lk({"A": a, "W": w, "C": c})          # launch: arguments checked against signature.json

The entry's files are read without following symlinks (tilec.safefs) and re-hashed against
the manifest immediately before anything is executed; the launcher then builds the kernel
from those very bytes (never re-reading the files), so a file swapped after the check is
never run. The frontend is never imported: the launch signature, the generated code and,
for launchers that run IR (reference, ascend-sim), the serialised IR are all in the entry.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from codegen.signature import LaunchError, Signature
from tilec import safefs

__all__ = ["EntryError", "LoadedKernel", "read_entry", "load_entry"]

ENTRIES = "entries"


class EntryError(Exception):
    """An entry that cannot be loaded: missing, tampered, malformed; one line naming the path."""


@dataclass(eq=False)
class LoadedKernel:
    """One compiled variant, ready to launch: ``lk(args)`` returns what the backend reports
    (the simulator's Stats for ascend-sim, None otherwise)."""
    name: str
    binding: dict
    key: str
    launcher: str
    signature: Signature
    run: Callable[[dict], object] = field(repr=False)
    files: dict = field(repr=False, default_factory=dict)   # name -> bytes, as verified
    _ir: object = field(default=None, repr=False)

    def __call__(self, args: dict):
        return self.run(args)

    @property
    def ir(self):
        """The entry's tile IR (from its ``ir.json``), for tools that inspect or re-lower it."""
        if self._ir is None:
            from tilec.ir.printer import print_kernel
            from tilec.ir.serial import IRFormatError, from_json
            try:
                ir = from_json(json.loads(self.files["ir.json"]))
            except (KeyError, ValueError, IRFormatError) as e:
                raise EntryError(f"{ENTRIES}/{self.key}/ir.json: {e}") from None
            # the key hashes kernel.ir: the JSON must describe exactly that program
            if print_kernel(ir).encode() != self.files.get("kernel.ir"):
                raise EntryError(f"{ENTRIES}/{self.key}/ir.json does not describe the program in kernel.ir")
            self._ir = ir
        return self._ir


def read_entry(root: str | Path, entry: dict, names=None) -> dict[str, bytes]:
    """The files of ``entry`` (a manifest entry), each checked against its recorded sha256;
    EntryError naming the first that is missing, unsafe or different."""
    key = entry["key"]
    out = {}
    for name, info in sorted(entry["files"].items()):
        if names is not None and name not in names:
            continue
        rel = f"{ENTRIES}/{key}/{name}"
        try:
            data = safefs.read_bytes(root, rel)
        except FileNotFoundError:
            raise EntryError(f"{Path(root) / rel}: missing (rebuild the directory)") from None
        except OSError as e:
            raise EntryError(f"{Path(root) / rel}: unreadable: {e.strerror or e}") from None
        got = hashlib.sha256(data).hexdigest()
        if got != info["sha256"]:
            raise EntryError(f"{Path(root) / rel}: tampered: sha256 {got[:16]}... differs from the "
                             f"manifest's {info['sha256'][:16]}...")
        out[name] = data
    return out


def load_entry(root: str | Path, entry: dict, launcher: str, target: str) -> LoadedKernel:
    """Verify ``entry``'s files and build the kernel ``launcher`` runs from them."""
    from runtime import launchers
    files = read_entry(root, entry)
    try:
        sig = Signature.from_json(json.loads(files["signature.json"]))
    except KeyError:
        raise EntryError(f"{Path(root) / ENTRIES / entry['key']}: no signature.json (compiled by an older "
                         f"tilec; rebuild the directory)") from None
    except (ValueError, LaunchError) as e:
        raise EntryError(f"{Path(root) / ENTRIES / entry['key']}/signature.json: {e}") from None
    lk = LoadedKernel(entry.get("kernel", sig.kernel), dict(entry.get("binding") or {}), entry["key"],
                      launcher, sig, run=None, files=files)
    lk.run = launchers.loader(launcher, target)(lk)
    return lk
