"""The directory: the PBX's users and departments, and which CRM user each PBX user is.

A PBX user reaches us as a login (`andy`), `login@tenant`, an extension (`708`) or a direct number;
the resolver turns each into one canonical login, and `g_<id>@tenant` or `pbx` into nobody. The
mapping between PBX logins and CRM users is set by hand (`mapUser`) or proposed where emails or names
match; `contact` answers the PBX login of a contact's responsible CRM user, so the PBX can route.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pbxbridge.phones import InvalidPhoneError, normalize_phone

if TYPE_CHECKING:  # the webhook imports this module; the PBX client (and requests) it never needs
    from pbxbridge.pbx.models import PbxAccount, PbxGroup


def pbx_login(user: str | None) -> str | None:
    """The PBX user's login in `andy` or `andy@tenant`; None for groups (`g_...`), `pbx`, `ivr`, `fax`."""
    if not user:
        return None
    login = user.split("@", 1)[0].strip()
    if not login or login.lower() in {"pbx", "ivr", "fax"} or login.startswith("g_"):
        return None
    return login


@dataclass(frozen=True, slots=True)
class PbxUser:
    login: str
    real_name: str | None = None
    ext: str | None = None
    telnum: str | None = None  # E.164
    email: str | None = None
    groups: tuple[str, ...] = ()
    crm_user: str | None = None
    active: bool = True
    # Where the PBX gives it (crmapi/v1's `with=status`): `online`, `offline`, ... as of the last sync.
    presence: str | None = None


@dataclass(frozen=True, slots=True)
class Department:
    id: str
    real_name: str | None = None
    ext: str | None = None


@dataclass(frozen=True)
class Directory:
    """A snapshot of the directory, with the lookups every other part uses."""

    users: tuple[PbxUser, ...] = ()
    departments: tuple[Department, ...] = ()
    region: str = "RU"
    _by_key: dict[str, str] = field(init=False, repr=False, compare=False)
    _by_crm: dict[str, str] = field(init=False, repr=False, compare=False)
    _by_login: dict[str, PbxUser] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[str, str] = {}
        by_crm: dict[str, str] = {}
        by_login: dict[str, PbxUser] = {}
        for user in self.users:
            by_login.setdefault(user.login, user)
            # Logins win over extensions, extensions over numbers: the order keys are claimed in.
            by_key.setdefault(user.login.lower(), user.login)
        for user in self.users:
            if user.ext:
                by_key.setdefault(user.ext, user.login)
        for user in self.users:
            if user.telnum:
                by_key.setdefault(user.telnum, user.login)
            if user.crm_user and user.active:
                by_crm.setdefault(user.crm_user, user.login)
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_by_crm", by_crm)
        object.__setattr__(self, "_by_login", by_login)

    def resolve(self, user: str | None) -> str | None:
        """The canonical login for `andy`, `andy@tenant`, `708` or `+7926...`; None for groups, `pbx`,
        and users the directory does not know (then the login as given, if it looks like one)."""
        login = pbx_login(user)
        if login is None:
            return None
        known = self._by_key.get(login.lower()) or self._by_key.get(login)
        if known:
            return known
        try:
            phone = normalize_phone(login, self.region)
        except InvalidPhoneError:
            return login
        return self._by_key.get(phone.e164, login)

    def user(self, login: str | None) -> PbxUser | None:
        """The user of a canonical login (as `resolve` gives it), active or not."""
        return self._by_login.get(login) if login else None

    def is_active(self, login: str | None) -> bool:
        user = self.user(login)
        return user is not None and user.active

    def still_active(self, login: str | None) -> bool:
        """A widget token's login may still use the widget: an active user of the directory. An empty
        directory (never synced) cannot say, and then no token could have been issued either."""
        return not self.users or self.is_active(login)

    def crm_user(self, login: str | None) -> str | None:
        user = self.user(login)
        return user.crm_user if user else None

    def responsible_login(self, responsible: str | None) -> str | None:
        """The canonical PBX login of a contact's responsible (a mapped CRM user, a login, extension or
        number), as a widget's token names it."""
        return self.resolve(self.pbx_login_for(responsible))

    def pbx_login_for(self, responsible: str | None) -> str | None:
        """What to answer the PBX for a contact's responsible: the PBX login of a mapped CRM user;
        otherwise the value as the CRM gave it (a login, extension or number the PBX routes by)."""
        if not responsible:
            return None
        return self._by_crm.get(responsible, responsible)


@dataclass(frozen=True, slots=True)
class CrmUser:
    crm_user: str
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    login: str
    crm_user: str
    reason: str


def propose_mappings(directory: Directory, crm_users: Iterable[CrmUser]) -> list[Proposal]:
    """Pairs of PBX and CRM users whose email (or, failing that, full name) match, one to one."""
    by_email = {u.email.strip().lower(): u for u in directory.users if u.email and u.active and not u.crm_user}
    by_name = {_name_key(u.real_name): u for u in directory.users if u.real_name and u.active and not u.crm_user}
    taken: set[str] = set()
    proposals = []
    for crm in crm_users:
        user, reason = None, ""
        if crm.email and crm.email.strip().lower() in by_email:
            user, reason = by_email[crm.email.strip().lower()], "email"
        elif crm.name and _name_key(crm.name) in by_name:
            user, reason = by_name[_name_key(crm.name)], "name"
        if user and user.login not in taken:
            taken.add(user.login)
            proposals.append(Proposal(login=user.login, crm_user=crm.crm_user, reason=reason))
    return proposals


def _name_key(name: str | None) -> str:
    # "Петров Андрей" and "Андрей Петров" are one person.
    return " ".join(sorted((name or "").lower().replace("ё", "е").split()))


class DirectoryStore(Protocol):
    def snapshot(self, region: str, departments: bool = True) -> Directory: ...
    def save_user(self, user: PbxUser) -> None:
        """Write the PBX's view of a user; its CRM mapping is kept."""
        ...

    def save_department(self, department: Department) -> None: ...
    def deactivate_users(self, logins: Iterable[str]) -> None: ...
    def map_user(self, login: str, crm_user: str | None) -> bool:
        """Set (or with None, clear) a user's CRM user; False when there is no such user."""
        ...


@dataclass
class DirectorySyncReport:
    users: int
    departments: int
    deactivated: list[str]


class DirectorySource(Protocol):
    def accounts(self) -> list[PbxAccount]: ...
    def groups(self, user: str | None = None) -> list[PbxGroup]: ...


def sync_directory(pbx: DirectorySource, store: DirectoryStore, region: str) -> DirectorySyncReport:
    """Copy the PBX's users and departments (and who is in which) into the directory."""
    known = store.snapshot(region)
    accounts = pbx.accounts()
    departments = pbx.groups()
    for department in departments:
        store.save_department(Department(id=department.id, real_name=department.real_name, ext=department.ext))
    for account in accounts:
        telnum = None
        if account.telnum:
            try:
                telnum = normalize_phone(account.telnum, region).e164
            except InvalidPhoneError:
                telnum = None
        memberships = tuple(group.id for group in pbx.groups(account.name))
        store.save_user(
            PbxUser(
                login=account.name,
                real_name=account.real_name,
                ext=account.ext,
                telnum=telnum,
                email=account.email,
                groups=memberships,
                presence=account.presence,
            )
        )
    current = {account.name for account in accounts}
    gone = [user.login for user in known.users if user.active and user.login not in current]
    store.deactivate_users(gone)
    return DirectorySyncReport(users=len(accounts), departments=len(departments), deactivated=gone)


class CachedDirectory:
    """A directory snapshot kept for `ttl` seconds per process: one read per container now and then,
    not one per push (the `contact` answer has a budget of one read)."""

    def __init__(self, load: Callable[[], Directory], ttl: float = 300) -> None:
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: Directory | None = None
        self._expires = 0.0

    def __call__(self) -> Directory:
        now = time.monotonic()
        if self._value is None or now >= self._expires:
            with self._lock:
                if self._value is None or now >= self._expires:
                    try:
                        self._value = self._load()
                    except Exception:
                        if self._value is None:
                            raise
                        # A directory a few minutes old beats none: keep it, and try again soon.
                        self._expires = now + min(self._ttl, 30)
                        return self._value
                    self._expires = now + self._ttl
        return self._value

    def forget(self) -> None:
        self._value = None
