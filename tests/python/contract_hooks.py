"""schemathesis hooks of the API contract test (cli/tests/it/contract.rs).

JSON Schema cannot bound a `date-time`: the document's description of `tx_ts` says the server
accepts times from 2000-01-01 to one day after its clock. Schema-valid `date-time` values are
drawn from that range (UTC and fixed offsets, with and without fractions of a second), so that
`positive_data_acceptance` tests what the document promises. Everything else is generated
from the schema as it is.
"""

import datetime as dt

import schemathesis
from hypothesis import strategies as st

# Naive bounds; an offset of up to 14 h moves the UTC time by as much, hence the margin.
EARLIEST = dt.datetime(2000, 1, 2)
LATEST = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=1)
OFFSETS = st.sampled_from([0, 60, -300, 330, 840, -720]).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


def rfc3339(t: dt.datetime) -> str:
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


schemathesis.openapi.format(
    "date-time",
    st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=OFFSETS).map(rfc3339),
)
