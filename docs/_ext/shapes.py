"""Let docstrings keep PyTorch's ``Shape`` section (and ``Example`` for one example), which
numpydoc does not know: before numpydoc parses a docstring, a ``Shape`` section becomes the start
of its ``Notes`` and ``Example`` becomes ``Examples``."""


def _sections(lines):
    """(title, start, end) of each numpydoc-style section: a title line underlined with dashes."""
    out = []
    for i in range(len(lines) - 1):
        title, rule = lines[i].strip(), lines[i + 1].strip()
        if title and rule and set(rule) == {"-"} and len(rule) >= len(title) - 1:
            out.append([title, i])
    bounds = []
    for k, (title, start) in enumerate(out):
        end = out[k + 1][1] if k + 1 < len(out) else len(lines)
        bounds.append((title, start, end))
    return bounds


def rewrite(app, what, name, obj, options, lines):
    for title, start, _ in reversed(_sections(lines)):
        if title == "Example":
            lines[start] = lines[start].replace("Example", "Examples")
            lines[start + 1] = lines[start + 1] + "-"
    sections = _sections(lines)
    shape = next(((s, e) for t, s, e in sections if t == "Shape"), None)
    if shape is None:
        return
    start, end = shape
    body = [line for line in lines[start + 2:end]]
    del lines[start:end]
    while body and not body[-1].strip():
        body.pop()
    block = ["**Shape**", ""] + body + [""]
    sections = _sections(lines)
    notes = next(((s, e) for t, s, e in sections if t == "Notes"), None)
    if notes is not None:
        lines[notes[0] + 2:notes[0] + 2] = block
        return
    examples = next((s for t, s, e in sections if t == "Examples"), len(lines))
    lines[examples:examples] = ["Notes", "-----"] + block


def setup(app):
    app.connect("autodoc-process-docstring", rewrite, priority=100)   # before numpydoc (500)
    return {"parallel_read_safe": True}
