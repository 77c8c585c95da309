"""The API's projects: the ones a person may charge time to, for scripts that need an id."""

from ninja import Router, Schema

from timesheet.models import Projet
from timesheet.web.api.common import ERRORS

router = Router(tags=["projets"])


class ProjetOut(Schema):
    id: int
    designation: str


@router.get("/projets/", response={200: list[ProjetOut], **ERRORS}, summary="The projects you may charge time to")
async def list_projets(request):
    projets = Projet.objects.usable_by(request.auth).order_by("designation", "id").values("id", "designation")
    return [projet async for projet in projets]
