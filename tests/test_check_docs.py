"""scripts/check_docs.py: which blocks of a page it checks, and where it says they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.check_docs_script import check_docs

PAGE = """\
# A page

```python
print("first")
```

```sh
python -c 'print()'
```

<!-- check_docs: skip, the lines of a config file that change -->
```python
options = ...
```

1. In a list:

   ```python
   # shop/db.py
   def total(count: int) -> int:
       return count
   ```

~~~~markdown
```python
not = a block of this page
```
~~~~

```py
from shop.db import total
```
"""


def write(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


def test_the_python_blocks_of_a_page(tmp_path: Path) -> None:
    blocks, skipped = check_docs.python_blocks(write(tmp_path, PAGE))
    assert skipped == 1
    assert [(block.fence_line, block.file_name) for block in blocks] == [
        (3, "block_line_4.py"),
        (18, "shop/db.py"),
        (30, "block_line_31.py"),
    ]
    assert blocks[1].code == (
        "# shop/db.py\ndef total(count: int) -> int:\n    return count\n"
    )  # the list's indentation taken off


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<!-- check_docs: skip -->\n```python\nx = 1\n```\n",
            "page.md:1: write the marker as '<!-- check_docs: skip, <why",
        ),
        (
            "```python\n# a.py\nx = 1\n```\n\n```python\n# a.py\ny = 2\n```\n",
            "page.md:7: another block of this page is a.py already",
        ),
        ("```python\n# ../a.py\nx = 1\n```\n", "page.md:2: name the block's file by a relative"),
        ("text\n```python\nx = 1\n", "page.md:2: this code block is never closed"),
    ],
)
def test_a_page_it_cannot_check_says_what_to_change(
    tmp_path: Path, text: str, message: str
) -> None:
    page = write(tmp_path, text)
    with pytest.raises(check_docs.DocumentError) as raised:
        check_docs.python_blocks(page)
    assert str(raised.value).startswith(message.replace("page.md", str(page)))


def test_errors_name_the_page_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One mypy run: a block imports a module another block of the page shows, rows are
    typed, and a wrong call is reported at its line of the page."""
    page = write(
        tmp_path,
        PAGE
        + """
```python
import asyncio

from databases import Database
from shop.db import total


async def main() -> None:
    async with Database("sqlite:///shop.db") as database:
        row = await database.fetch_one("SELECT 1 AS id")
        assert row is not None
        print(total(row.id), list(row.keys()))
        print(total("one"))


asyncio.run(main())
```
""",
    )
    assert check_docs.main([str(page)]) == 1
    output = capsys.readouterr().out.splitlines()
    wrong_call = PAGE.count("\n") + 14
    assert output == [
        f'{page}:{wrong_call}: error: Argument 1 to "total" has incompatible type "str"; '
        'expected "int"  [arg-type]',
        "check_docs: 4 Python blocks in 1 documents, 1 opted out: FAILED",
    ]
