"""Document text and a filename built to break out of HTML if anything renders them as
markup: shared by the API and browser tests of the upload -> search -> snippet path."""

from __future__ import annotations

# Markup of every kind a snippet could carry: a script, an event handler, tags splitting a
# word, a literal <mark> around a word the query matches, entities and quotes. Each sets
# window.xssRan if it ever runs.
HOSTILE_TEXT = (
    "The grey heron <script>window.xssRan = 1</script> waded past "
    '<img src=x onerror="window.xssRan = 2"> into the wet<b>lands</b> where a '
    "<mark>heron</mark> nests; egrets &amp; &lt;bitterns&gt; say \"quack\" & 'hush'."
)
HOSTILE_FILENAME = "<img src=x onerror=window.xssRan=3>heron.txt"  # no "/": kept whole
HOSTILE_QUERY = "heron wetlands script onerror bitterns"
