"""``.. tutorial:: name.py``: a tutorial script, executed while the docs are built.

The page shows the script's docstring as prose, then its code, then what it printed. A script
that fails fails the build, so a tutorial can never silently rot.
"""

import ast
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


class Tutorial(Directive):
    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        path = Path(env.srcdir) / "tutorials" / self.arguments[0]
        env.note_dependency(str(path))
        source = path.read_text()
        tree = ast.parse(source)
        doc = (ast.get_docstring(tree) or "").split("\n", 1)
        doc = doc[1] if len(doc) > 1 else ""   # the first line is the page's title
        body = source
        if doc and tree.body and isinstance(tree.body[0], ast.Expr):
            body = "\n".join(source.splitlines()[tree.body[0].end_lineno:]).strip("\n")
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=900,
                              cwd=str(Path(env.srcdir).parent))
        if proc.returncode != 0:
            raise self.severe(f"tutorial {path.name} failed:\n{proc.stderr[-3000:]}")
        container = nodes.section()
        self.state.nested_parse(StringList(doc.splitlines()), self.content_offset, container)
        code = nodes.literal_block(body, body, language="python")
        heading = nodes.rubric(text="What it prints")
        output = nodes.literal_block(proc.stdout, proc.stdout, language="text")
        return list(container.children) + [code, heading, output]


def setup(app):
    app.add_directive("tutorial", Tutorial)
    return {"parallel_read_safe": True}
