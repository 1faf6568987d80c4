"""mkdocs hook (mkdocs.yml `hooks:`): links from a page to files of the
repository outside docs/ (a source file, an example, a benchmark's results).

On GitHub such a link opens the file; the built site has no copy of it, so
there the link becomes the file's path in code, and an image becomes a line
naming its file. A link whose target does not exist is left as it is, for
mkdocs to report (an error under --strict), as it reports a link to a page
that does not exist.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = pathlib.Path(config["docs_dir"]).resolve()
    repository = docs.parent
    here = (docs / page.file.src_path).parent

    def outside_docs(match: re.Match[str]) -> str:
        image, text, target = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path = (here / target.split("#")[0]).resolve()
        if path == docs or docs in path.parents or not path.exists():
            return match.group(0)
        name = path.relative_to(repository).as_posix() + ("/" if path.is_dir() else "")
        if image:
            return f"*(chart: `{name}` in the repository)*"
        if text.strip("`") == name or text.strip("`") == name.rstrip("/"):
            return f"`{name}`"
        return f"{text} (`{name}`)"

    return LINK.sub(outside_docs, markdown)
