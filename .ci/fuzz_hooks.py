"""Schemathesis hooks for Lockstep's GraphQL fuzz run (.ci/fuzz).

Strategies for the custom scalars, so that mutations are generated rather
than skipped, and the check that matters: no answer without a client error
code, no INTERNAL, no 5xx. (GraphQL errors with a client code — a CONFLICT,
a BAD_USER_INPUT — are the right answer to random input.)
"""

import datetime

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.from_regex(r"\A-?[0-9]{1,32}(\.[0-9]{1,8})?\Z", fullmatch=True),
        st.sampled_from(["0", "1000.00", "9000000", "922337203685477.58", "1e30", "NaN"]),
    ).map(nodes.String),
)
schemathesis.graphql.scalar(
    "DateTime",
    st.datetimes(
        min_value=datetime.datetime(1900, 1, 1),
        max_value=datetime.datetime(2200, 1, 1),
        timezones=st.just(datetime.timezone.utc),
    ).map(lambda d: nodes.String(d.isoformat())),
)


@schemathesis.check
def no_internal_error(ctx, response, case):
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except Exception:
        raise AssertionError("the answer is not JSON")
    for error in (body or {}).get("errors") or []:
        code = ((error or {}).get("extensions") or {}).get("code")
        if code in (None, "INTERNAL"):
            raise AssertionError(f"an error without a client code: {error}")
    return None
