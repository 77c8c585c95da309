"""The API's personal tokens: managed with a session, never with a token."""

from datetime import datetime, timedelta
from typing import Annotated

from ninja import Field, Router, Schema, Status
from pydantic import BeforeValidator

from timesheet.core import limits
from timesheet.domain import tokens
from timesheet.models import ApiToken
from timesheet.web.api.common import ERRORS, Session, Strict, integral_float_to_int

router = Router(tags=["tokens"], auth=Session())


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=limits.TOKEN_NAME_MAX_LENGTH)
    scope: Annotated[ApiToken.Scope, Field(strict=False)] = ApiToken.Scope.READ
    expires_in_days: Annotated[
        int, Field(ge=1, le=limits.TOKEN_MAX_LIFETIME.days), BeforeValidator(integral_float_to_int)
    ] = limits.TOKEN_DEFAULT_LIFETIME.days


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    scope: ApiToken.Scope
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenOut):
    token: str = Field(description="The token itself: shown this once, never again.")


@router.get("/tokens/", response={200: list[TokenOut], **ERRORS}, summary="Your API tokens")
async def list_tokens(request):
    return [token async for token in ApiToken.objects.filter(user=request.auth)]


@router.post("/tokens/", response={201: NewToken, **ERRORS}, summary="Make an API token (shown once)")
async def create_token(request, payload: TokenIn):
    token, raw = await tokens.acreate_token(
        user=request.auth, name=payload.name, scope=payload.scope, lifetime=timedelta(days=payload.expires_in_days)
    )
    return Status(201, {**TokenOut.from_orm(token).model_dump(), "token": raw})


@router.delete("/tokens/{id:token_id}/", response={204: None, **ERRORS}, summary="Revoke a token now")
async def revoke_token(request, token_id: int):
    await tokens.arevoke_token(token_id=token_id, actor=request.auth)
    return Status(204, None)
