"""Mounting the redeemer's HTTP API on the faust worker's web server.

The views are generated from `api.ROUTES` (passnum/edge/web_views.py): each hands the request to
`RedeemerApi` (services/redeemer/api.py). The API's connections and producer open in a faust
service that starts with the worker.
"""

from __future__ import annotations

import faust

from passnum.core.settings import Settings
from passnum.edge.operator_api import OperatorApi
from passnum.edge.web_views import mount_api
from services.redeemer.api import RedeemerApi
from services.redeemer.openapi import openapi_document
from services.redeemer.operator_api import operator_api


def attach_api(app: faust.App, settings: Settings) -> RedeemerApi:
    return attach_apis(app, settings)[0]


def attach_apis(app: faust.App, settings: Settings) -> tuple[RedeemerApi, OperatorApi]:
    """The tenants' API and the operator's routes (services/redeemer/operator_api.py), one
    OpenAPI document for both. A token the operator rotates or revokes here stops working
    at once in this process's tenant API."""
    api = RedeemerApi(settings)
    operator = operator_api(settings, (api.tokens,))
    mount_api(app, api, openapi_document())
    mount_api(app, operator, None)
    return api, operator
