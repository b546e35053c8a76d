"""Mounting the issuer's HTTP API on the faust worker's web server.

The views are generated from `api.ROUTES` (passnum/edge/web_views.py): each hands the request to
`IssuerApi` (services/issuer/api.py), which authenticates, validates and answers. The API's
connections open in a faust service that starts with the worker, never at import.
"""

from __future__ import annotations

import faust

from passnum.core.settings import Settings
from passnum.edge.operator_api import OperatorApi
from passnum.edge.web_views import mount_api
from services.issuer.api import IssuerApi
from services.issuer.openapi import openapi_document
from services.issuer.operator_api import operator_api
from services.issuer.print_api import mount_print_routes


def attach_api(app: faust.App, settings: Settings) -> IssuerApi:
    return attach_apis(app, settings)[0]


def attach_apis(app: faust.App, settings: Settings) -> tuple[IssuerApi, OperatorApi]:
    """The tenants' API and the operator's routes (services/issuer/operator_api.py), one
    OpenAPI document for both. A token the operator rotates or revokes here stops working
    at once in this process's tenant API."""
    api = IssuerApi(settings)
    operator = operator_api(settings, (api.tokens,))
    mount_api(app, api, openapi_document())
    # Printed booklets (PDF), behind the same tokens: services/issuer/print_api.py.
    mount_print_routes(app, api, settings)
    mount_api(app, operator, None)
    return api, operator
