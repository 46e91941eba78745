"""The CPU-matched control is sized as a fixed number of iterations, from a calibration."""

from bench.cpu_control import iterations_for, spin


def test_work_is_sized_from_the_measured_cost_of_one_iteration() -> None:
    # 0.1 µs an iteration: 200 µs of work is 2,000 iterations.
    assert iterations_for(200.0, 1e-7) == 2000
    assert iterations_for(200.0, 2e-7) == 1000


def test_no_work_for_a_gateway_no_costlier_than_the_relay() -> None:
    assert iterations_for(0.0, 1e-7) == 0
    assert iterations_for(-15.0, 1e-7) == 0


def test_the_work_is_the_same_computation_every_time() -> None:
    assert spin(4) == 0 + 1 + 4 + 9
    assert spin(0) == 0
