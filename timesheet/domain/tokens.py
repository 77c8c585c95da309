"""
Personal API tokens: made, used and revoked.

A token reads ``fdt_<prefix>_<secret>``. The prefix finds its row; only the
SHA-256 of the whole token is stored (a random 192-bit secret needs no slow
hash), compared in constant time. A token is shown once, when it is made.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.prepared import Prepared, columns, instance
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import ApiToken

PREFIX = "fdt"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    *, user, name: str, scope: str = ApiToken.Scope.READ, lifetime: timedelta = limits.TOKEN_DEFAULT_LIFETIME
):
    """Make a token for ``user``; return ``(token, raw)``, where ``raw`` is the only copy of the secret."""
    name = (name or "").strip()
    if not name or len(name) > limits.TOKEN_NAME_MAX_LENGTH or "\x00" in name:
        raise Refused(
            _("A token needs a name of 1 to %(limit)s characters.") % {"limit": limits.TOKEN_NAME_MAX_LENGTH},
            code=Code.INVALID,
        )
    if scope not in ApiToken.Scope.values:
        raise Refused(
            _("The scope must be one of %(scopes)s.") % {"scopes": ", ".join(ApiToken.Scope.values)}, code=Code.INVALID
        )
    if not timedelta(0) < lifetime <= limits.TOKEN_MAX_LIFETIME:
        raise Refused(
            _("A token lives from 1 to %(days)s days.") % {"days": limits.TOKEN_MAX_LIFETIME.days}, code=Code.INVALID
        )
    prefix = secrets.token_hex(6)
    raw = f"{PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    token = ApiToken.objects.create(
        user=user, name=name, prefix=prefix, key_hash=_hash(raw), scope=scope, expires_at=timezone.now() + lifetime
    )
    return token, raw


def revoke_token(*, token_id: int, actor) -> ApiToken:
    """Revoke one of the actor's tokens (with the permission to delete tokens: anyone's), at once; return it."""
    tokens = (
        ApiToken.objects.all() if actor.has_perm("timesheet.delete_apitoken") else ApiToken.objects.filter(user=actor)
    )
    if not tokens.filter(pk=token_id).exists():
        raise Refused(_("Token %(id)s does not exist.") % {"id": token_id}, code=Code.NOT_FOUND)
    tokens.filter(pk=token_id, revoked_at__isnull=True).update(revoked_at=Now())
    return ApiToken.objects.get(pk=token_id)


# Every API request reads its token: the usable one of a prefix (unique), with its user and the database's now.
_USABLE = Prepared(
    lambda prefix: (
        ApiToken.objects.usable()
        .filter(prefix=prefix)
        .values(*columns(ApiToken), *columns(get_user_model(), "user__"), db_now=Now())
    ),
    "prefix",
    text=("prefix",),
)


def authenticate(raw: str) -> ApiToken | None:
    """
    The usable token ``raw`` is, with its user, or None; notes when it was
    last used. The user's permissions are read when first checked, on a
    database thread: most requests act on the user's own fiches and need none.
    """
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(raw) > 100:
        return None
    row = _USABLE.one(prefix=parts[1])
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(raw)):
        return None
    token = instance(ApiToken, row)
    token.user = instance(get_user_model(), row, "user__")
    stale_before = row["db_now"] - LAST_USED_RESOLUTION
    if token.last_used_at is None or token.last_used_at < stale_before:  # a write once a minute: most only read
        unnoted = Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before)
        ApiToken.objects.filter(unnoted, pk=token.pk).update(last_used_at=Now())
    return token


def still_usable(token_ids) -> set[int]:
    """Which of ``token_ids`` still authenticate: the open streams' check at every poll."""
    return set(ApiToken.objects.usable().filter(pk__in=token_ids).values_list("pk", flat=True))


acreate_token = async_twin(create_token)
arevoke_token = async_twin(revoke_token)
