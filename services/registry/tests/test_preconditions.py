"""If-Match as RFC 9110 reads it: `*`, strong tags of our versions, and clear refusals."""

import pytest

from capps_registry.apps.preconditions import at_version, etag, parse_if_match
from capps_registry.errors import ApiError


def test_absent_means_unconditional_and_star_admits_any_version() -> None:
    assert parse_if_match(None) is None
    star = parse_if_match(" * ")
    assert star is not None
    assert star.admits(1)
    assert star.admits(99)


def test_a_list_of_tags_admits_exactly_the_versions_it_names() -> None:
    condition = parse_if_match(f'{etag(3)}, "5" ,"x7"')
    assert condition is not None
    assert [version for version in range(8) if condition.admits(version)] == [3, 5]
    assert at_version(4).admits(4)
    assert not at_version(4).admits(5)


def test_weak_and_foreign_tags_are_well_formed_but_match_nothing() -> None:
    # If-Match compares strongly: a weak tag never matches (RFC 9110 §13.1.1).
    for header in ('W/"3"', '""', '"abc"', '"99999999999999999999999"'):
        condition = parse_if_match(header)
        assert condition is not None
        assert not any(condition.admits(version) for version in (0, 3, 10**19))


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("3", "entity tags such as"),
        ('"3', "entity tags such as"),
        ('"3", *', "not '*'"),
        ('"a b"', "entity tags such as"),
        (",".join(['"1"'] * 21), "21 entity tags; at most 20"),
    ],
)
def test_malformed_headers_are_a_400_naming_the_problem(header: str, says: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_if_match(header)
    assert refused.value.status == 400
    assert refused.value.code == "bad_precondition"
    assert says in refused.value.message
