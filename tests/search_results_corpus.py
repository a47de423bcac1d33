"""Documents for the results-by-document tests (API and browser): short notes in folders,
one Markdown guide, and one long handbook whose many chunks all match the same words."""

from __future__ import annotations

COUNT_NOTE = "Day {n}: a wetland count, {n} herons on the marsh."
HANDBOOK_PARAGRAPH = (
    "Marsh wetland survey, section {n}: the grey heron waits in the reeds of the wetland "
    "marsh while the survey team counts herons, egrets and bitterns along the marsh edge; "
    "water levels in the wetland rise after rain and the herons move to the shallows. "
)
FILES: dict[str, bytes] = {
    "guides/birds/heron.txt": b"The grey heron stalks fish in shallow wetland pools at dawn.",
    "guides/birds/egret.md": b"# Little egret\n\nThe little egret wades through wetland marsh.",
    "notes/wetlands.txt": b"Wetland notes: a heron and two egrets seen on the marsh path.",
    "long/marsh-handbook.txt": "\n\n".join(
        HANDBOOK_PARAGRAPH.format(n=n) * 2 for n in range(24)
    ).encode(),
    **{f"notes/counts/day-{n:02d}.txt": COUNT_NOTE.format(n=n).encode() for n in range(12)},
}
HANDBOOK = "long/marsh-handbook.txt"
QUERY = "heron wetland marsh"
