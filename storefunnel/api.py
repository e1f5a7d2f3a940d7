"""The /api/v1 router: every domain router mounted under one prefix, every route behind an API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from storefunnel.auth.deps import api_workspace
from storefunnel.contacts.routes import router as contacts_router
from storefunnel.cycle.routes import router as cycle_router
from storefunnel.ingest.import_routes import router as imports_router
from storefunnel.insight.model_routes import router as models_router
from storefunnel.insight.report_routes import router as report_router
from storefunnel.insight.routes import router as insight_router
from storefunnel.messaging.routes import router as messaging_router
from storefunnel.orders.routes import router as orders_router
from storefunnel.products.routes import router as products_router
from storefunnel.scoring.routes import router as scoring_router
from storefunnel.segments.routes import router as segments_router

router = APIRouter(prefix="/api/v1", dependencies=[Depends(api_workspace)])
router.include_router(contacts_router)
router.include_router(products_router)
router.include_router(orders_router)
router.include_router(imports_router)
router.include_router(segments_router)
router.include_router(cycle_router)
router.include_router(insight_router)
router.include_router(report_router)
router.include_router(models_router)
router.include_router(messaging_router)
router.include_router(scoring_router)
