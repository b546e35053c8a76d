"""Mounting the redeemer's HTTP API on the faust worker's web server.

The views are generated from `api.ROUTES` (passnum/web_views.py): each hands the request to
`RedeemerApi` (services/redeemer/api.py). The API's connections and producer open in a faust
service that starts with the worker.
"""

from __future__ import annotations

import faust

from passnum.settings import Settings
from passnum.web_views import mount_api
from services.redeemer.api import RedeemerApi
from services.redeemer.openapi import openapi_document


def attach_api(app: faust.App, settings: Settings) -> RedeemerApi:
    api = RedeemerApi(settings)
    mount_api(app, api, openapi_document())
    return api
