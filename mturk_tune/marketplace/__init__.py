"""The MTurk side of mturk-tune: an embedded MTurk-compatible marketplace and a simulated crowd.

- ``service.Marketplace``: the requester API's state machine plus the worker side, in SQLite.
- ``protocol.handle``: MTurk's JSON wire protocol over a Marketplace.
- ``local.local_client``: a real boto3 mturk client answered in-process (``--endpoint local``).
- ``moto_backend.register``: the Marketplace as moto's ``mturk`` backend (tests; needs moto).
- ``server``: the requester API and invited workers' pages over HTTP (``mturk-tune marketplace serve``).
- ``delivery``: event notifications sent to SQS/SNS at least once, from every transport.
- ``people``: serve the open HITs to invited people until they have done them (``demo --serve``).
- ``crowd``: simulated workers with known behaviour.
"""

from .errors import MTurkError
from .local import local_client, open_marketplace
from .service import Marketplace

__all__ = ["Marketplace", "MTurkError", "local_client", "open_marketplace"]
