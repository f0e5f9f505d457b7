"""Finding image / label / FOV triples in a data set's folder layout.

One adapter, :class:`FolderPairs`, covers every layout through its config (``conf/data/*.yaml``): a list of
groups, each naming an image folder and path templates for the label and the FOV mask relative to the data
set root. Templates take ``{stem}`` (the image file name without extension) and ``{prefix}`` (the stem up to
its first underscore, for DRIVE's ``21_training.tif`` ↔ ``21_manual1.gif``); an extension written as ``.*``
matches any image extension, in any case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vessel_lightning.data.images import IMAGE_EXTENSIONS

SPLITS = ("train", "val", "test")


class DataLayoutError(ValueError):
    """The data set root does not look like the configured layout."""


@dataclass(frozen=True)
class RawSample:
    """One image with its label (mask image or GeoJSON) and optional FOV mask, before preparation."""

    id: str
    image: Path
    label: Path
    fov: Path | None = None
    split: str | None = None  # fixed by the data set's convention; None: assigned from seeded fractions
    roi: Path | None = None  # an annotation sidecar (JSON) whose ``roi`` Polygon bounds the field


@dataclass
class Discovery:
    """What a layout scan found: usable samples, and files skipped with the reason."""

    samples: list[RawSample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, reason)


@dataclass(frozen=True)
class Group:
    """One image folder of a layout and where its labels and FOV masks are."""

    images: str
    label: str
    fov: str | None = None
    split: str | None = None
    roi: str | None = None  # a sidecar JSON template ("meta/{stem}.json"); optional per sample


def _fields(stem: str) -> dict[str, str]:
    return {"stem": stem, "prefix": stem.split("_", 1)[0]}


def _find(root: Path, template: str, stem: str) -> Path | None:
    """The file a template names for ``stem``: exact name, or any case of the extension (``.*`` = any image)."""
    relative = template.format(**_fields(stem))
    folder = (root / relative).parent
    name = Path(relative).name
    if not folder.is_dir():
        return None
    stem_part, _, ext = name.rpartition(".")
    for candidate in sorted(folder.iterdir()):
        if not candidate.is_file():
            continue
        if candidate.name == name:
            return candidate
        c_stem, _, c_ext = candidate.name.rpartition(".")
        if c_stem == stem_part and (
            c_ext.lower() == ext.lower() or (ext == "*" and f".{c_ext.lower()}" in IMAGE_EXTENSIONS)
        ):
            return candidate
    return None


def _template_regex(template: str) -> re.Pattern[str]:
    """A regex over file names that a template produces, capturing ``stem`` or ``prefix``."""
    name = Path(template).name
    pattern = (
        re.escape(name).replace(r"\{stem\}", r"(?P<stem>.+)").replace(r"\{prefix\}", r"(?P<prefix>[^_]+)")
    )
    pattern = pattern.replace(r"\.\*", r"\.[^.]+")
    return re.compile(f"^{pattern}$", re.IGNORECASE)


def _images_in(folder: Path, exclude: set[Path]) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p not in exclude
    )


class FolderPairs:
    """Pairs images with labels (and FOV masks) by file name, following configured folder groups.

    ``groups``: list of mappings with ``images`` (folder relative to root), ``label`` and optional ``fov``
    (path templates), optional ``roi`` (the template of an annotation sidecar whose ``roi`` Polygon, when set,
    becomes the sample's field: outside it is unknown, not background), and optional ``split`` (``train``/``test`` fixed by the data set; ``null`` lets prepare
    assign train/val/test from seeded fractions). ``test_ids``: ids put in the test split (CHASE_DB1's
    convention). ``label_rule``: how label images become binary (``threshold`` or ``nonzero``).
    """

    def __init__(
        self,
        groups: Sequence[dict],
        test_ids: Sequence[str] = (),
        label_rule: str = "threshold",
    ) -> None:
        self.groups = [Group(**dict(g)) for g in groups]
        for group in self.groups:
            if group.split not in (None, *SPLITS):
                raise ValueError(f"group {group.images!r}: split must be one of {SPLITS} or null")
        self.test_ids = set(test_ids)
        self.label_rule = label_rule

    def discover(self, root: str | Path) -> Discovery:
        """Scan ``root``; returns samples sorted by id, plus skipped files (image without label and the reverse)."""
        root = Path(root)
        if not root.is_dir():
            raise DataLayoutError(f"data root {root} does not exist or is not a folder")
        found = Discovery()
        seen: dict[str, Path] = {}
        searched = []
        for group in self.groups:
            folder = root / group.images
            if not folder.is_dir():
                continue
            searched.append(folder)
            labels_used: set[Path] = set()
            label_folder = (root / Path(group.label).parent).resolve()
            # Label files living beside the images (slit-lamp layout) must not count as images.
            is_label = _template_regex(group.label)
            beside = {
                p for p in folder.iterdir() if folder.resolve() == label_folder and is_label.match(p.name)
            }
            for image in _images_in(folder, beside):
                sample_id = image.stem
                label = _find(root, group.label, sample_id)
                rel = str(image.relative_to(root))
                if label is None:
                    found.skipped.append(
                        (rel, f"no annotation (expected {group.label.format(**_fields(sample_id))})")
                    )
                    continue
                if sample_id in seen:
                    found.skipped.append(
                        (rel, f"duplicate id {sample_id!r} (already {seen[sample_id].name})")
                    )
                    continue
                fov = _find(root, group.fov, sample_id) if group.fov else None
                if group.fov and fov is None:
                    found.skipped.append(
                        (rel, f"no FOV mask (expected {group.fov.format(**_fields(sample_id))})")
                    )
                    continue
                split = "test" if sample_id in self.test_ids else group.split
                roi = _find(root, group.roi, sample_id) if group.roi else None
                seen[sample_id] = image
                labels_used.add(label.resolve())
                found.samples.append(RawSample(sample_id, image, label, fov, split, roi))
            if label_folder.is_dir():
                for label in sorted(label_folder.iterdir()):
                    if is_label.match(label.name) and label.resolve() not in labels_used and label.is_file():
                        found.skipped.append((str(label.relative_to(root)), "annotation without an image"))
        if not searched:
            folders = ", ".join(sorted({g.images for g in self.groups}))
            raise DataLayoutError(f"{root}: none of the expected image folders exist ({folders})")
        missing = self.test_ids - set(seen)
        if missing:
            found.skipped.append((", ".join(sorted(missing)), "listed in test_ids but not found"))
        found.samples.sort(key=lambda s: s.id)
        return found
