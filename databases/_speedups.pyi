# The C half of databases/backends/common/record_base.py, which it mirrors.
import typing

_R = typing.TypeVar("_R", bound=RecordBase)

class RecordBase:
    _shape: typing.Any
    _index: dict[typing.Any, int]
    _values: tuple[typing.Any, ...]
    def __init__(
        self, shape: typing.Any, index: dict[typing.Any, int], values: typing.Iterable[typing.Any]
    ) -> None: ...
    def __getitem__(self, key: typing.Any) -> typing.Any: ...
    def __len__(self) -> int: ...

_Converters = tuple[tuple[int, typing.Callable[[typing.Any], typing.Any]], ...]

def make_record(
    cls: type[_R],
    shape: typing.Any,
    index: dict[typing.Any, int],
    values: typing.Any,
    converters: _Converters = (),
) -> _R: ...
def make_records(
    cls: type[_R],
    shape: typing.Any,
    index: dict[typing.Any, int],
    rows: typing.Iterable[typing.Any],
    converters: _Converters = (),
) -> list[typing.Any]: ...
