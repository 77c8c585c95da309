"""The API's sessions: the CSRF token, sign in, sign out."""

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.middleware.csrf import get_token
from ninja import Field, Router, Schema
from ninja.errors import AuthenticationError

from timesheet.web.api.common import ERRORS, Strict
from timesheet.web.http import locked_out

router = Router(tags=["sessions"])


class Credentials(Strict):
    username: str = Field(max_length=150)
    password: str = Field(max_length=4096)


class Me(Schema):
    id: int
    username: str
    is_staff: bool


class CsrfToken(Schema):
    csrfToken: str


@router.get("/csrf", auth=None, response={200: CsrfToken, **ERRORS}, summary="The CSRF token for unsafe requests")
async def csrf(request):
    return {"csrfToken": get_token(request)}


@router.post("/login", auth=None, response={200: Me, **ERRORS}, summary="Sign in with a session")
async def login(request, payload: Credentials):
    # Through sync_to_async: the sign-in throttling backend (django-axes) has no async entry point.
    user = await sync_to_async(auth.authenticate)(request, username=payload.username, password=payload.password)
    if getattr(request, "axes_locked_out", False):  # too many failures: refused, right password or not
        return locked_out(request)
    if user is None:
        raise AuthenticationError(401, "Wrong username or password.")
    await auth.alogin(request, user)
    return {"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff}


@router.post("/logout", response={200: dict, **ERRORS}, summary="Sign out of the session")
async def logout(request):
    await auth.alogout(request)
    return {}
