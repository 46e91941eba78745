"""wrk's report is parsed into the figures the bench table shows."""

import pytest

from bench.wrk import parse_wrk

REPORT = """Running 10s test @ http://127.0.0.1:8000/api/alerts
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  30.00ms   90.00%
    Req/Sec     7.80k   300.00     8.20k    70.00%
  Latency Distribution
     50%  850.00us
     75%    4.20ms
     90%    5.10ms
     99%    1.20s
  78000 requests in 10.00s, 40.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:   7800.00
"""


def test_parses_totals_percentiles_and_errors() -> None:
    result = parse_wrk(REPORT)
    assert result.requests == 78_000
    assert result.seconds == pytest.approx(10.0)
    assert result.per_second == pytest.approx(7_800.0)
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p90_ms == pytest.approx(5.1)
    assert result.p99_ms == pytest.approx(1_200.0)
    assert result.non_2xx == 12
    assert result.socket_errors == 3


def test_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused")


def test_throughput_leaves_out_error_answers() -> None:
    result = parse_wrk(REPORT)
    assert result.ok_per_second == pytest.approx((78_000 - 12) / 10.0)


def test_pacing_holds_each_connection_long_enough_for_the_total_rate() -> None:
    import re

    from bench.wrk import pacing_script

    # 8 connections at 1,000 calls/s in all: each waits 8 ms on average between its calls,
    # drawn at random (exponentially), not the same hold every time.
    script = pacing_script(1000, 8)
    assert "function delay()" in script
    assert "math.random()" in script
    assert "math.log(1 - math.random())" in script
    means = [float(mean) for mean in re.findall(r"\* ([\d.]+)", script)]
    assert means == [pytest.approx(8.0)]
    assert re.findall(r"\* ([\d.]+)", pacing_script(2200, 128)) == ["58.182"]
