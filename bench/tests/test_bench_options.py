"""The command line picks scenario groups and keeps every size within its bounds."""

import pytest

from bench.options import GROUPS, parse_options


def test_defaults_run_every_group() -> None:
    options = parse_options([])
    assert options.only == tuple(GROUPS)
    assert (options.seconds, options.rounds, options.events) == (5, 3, 100_000)


def test_only_keeps_run_order_and_drops_repeats() -> None:
    options = parse_options(["--only", "aggregator, gateway,gateway", "--events", "200_000"])
    assert options.only == ("gateway", "aggregator")
    assert options.events == 200_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "gateway,nope"], "unknown scenario group nope"),
        (["--only", ","], "unknown scenario group"),
        (["--seconds", "0"], "0 is outside 1..120"),
        (["--events", "5"], "5 is outside 20000..2000000"),
        (["--connections", "many"], "'many' is not a whole number"),
    ],
)
def test_bad_options_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
