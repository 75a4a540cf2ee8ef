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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from pbxbridge.phones import InvalidPhoneError, normalize_phone

if TYPE_CHECKING:  # the webhook imports this module; the PBX client (and requests) it never needs
    from pbxbridge.pbx.models import PbxAccount, PbxGroup


def utc_text(moment: datetime) -> str:
    """A moment as the API shows it: UTC, to the second, with `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pbx_login(user: str | None) -> str | None:
    """The PBX user's login in `andy` or `andy@tenant`; None for groups (`g_...`), `pbx`, `ivr`, `fax`."""
    if not user:
        return None
    login = user.split("@", 1)[0].strip()
    if not login or login.lower() in {"pbx", "ivr", "fax"} or login.startswith("g_"):
        return None
    return login


# Who sees whom: a manager their own calls, a supervisor their departments', an admin everyone's.
Role = Literal["manager", "supervisor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
# The PBX's own words for a role (crmapi/v1's user `role`); any other word, or none, is a manager.
PBX_ROLES: dict[str, Role] = {"admin": "admin", "group_head": "supervisor"}


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
    presence_at: datetime | None = None  # that sync (UTC), where the directory keeps it
    # The role as the PBX says it (`admin`, `group_head`, ...), None where its API says none.
    pbx_role: str | None = None
    # Set by hand (`mapUser`); each wins over what the PBX says. None: not set.
    role_override: Role | None = None
    departments_override: tuple[str, ...] | None = None

    @property
    def role(self) -> Role:
        """The mapping's role, else the PBX's, else `manager`."""
        if self.role_override is not None:
            return self.role_override
        return PBX_ROLES.get((self.pbx_role or "").strip().lower(), "manager")

    @property
    def role_source(self) -> Literal["mapping", "pbx", "default"]:
        if self.role_override is not None:
            return "mapping"
        return "pbx" if (self.pbx_role or "").strip().lower() in PBX_ROLES else "default"

    @property
    def departments(self) -> tuple[str, ...]:
        """The departments a supervisor sees: as mapped, else the ones they are a member of (a PBX
        group head heads their own groups). Only a supervisor has any."""
        if self.role != "supervisor":
            return ()
        return self.departments_override if self.departments_override is not None else self.groups


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


def visible_logins(viewer: PbxUser | None, directory: Directory) -> frozenset[str]:
    """The logins whose calls, call-backs and figures `viewer` may see. A manager sees themself; a
    supervisor themself and every member of their departments (members gone from the PBX too: their
    past calls are still the team's); an admin everyone. An unknown or inactive viewer sees no one."""
    if viewer is None or not viewer.active:
        return frozenset()
    if viewer.role == "admin":
        return frozenset(user.login for user in directory.users)
    if viewer.role == "supervisor":
        departments = set(viewer.departments)
        members = (user.login for user in directory.users if departments.intersection(user.groups))
        return frozenset((viewer.login, *members))
    return frozenset((viewer.login,))


def user_listing(user: PbxUser) -> dict[str, object]:
    """A user as `listUsers` answers it: the PBX's view, the mapping, and the role in force with
    where it comes from."""
    return {
        "login": user.login,
        "real_name": user.real_name,
        "ext": user.ext,
        "telnum": user.telnum,
        "email": user.email,
        "groups": list(user.groups),
        "crm_user": user.crm_user,
        "active": user.active,
        "presence": user.presence,
        # The sync that saw the presence, as UTC text.
        "presence_at": utc_text(user.presence_at) if user.presence_at else None,
        "role": user.role,
        "role_source": user.role_source,
        "departments": list(user.departments),
        "pbx_role": user.pbx_role,
    }


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
    def save_user(self, user: PbxUser, pbx_says_role: bool = False) -> None:
        """Write the PBX's view of a user; its CRM mapping and role override are kept. The PBX's role
        is written (or, None, cleared) only when `pbx_says_role`: an API without roles keeps it."""
        ...

    def save_department(self, department: Department) -> None: ...
    def deactivate_users(self, logins: Iterable[str]) -> None: ...
    def map_user(self, login: str, crm_user: str | None) -> bool:
        """Set (or with None, clear) a user's CRM user; False when there is no such user."""
        ...

    def set_role(self, login: str, changes: RoleChanges) -> bool:
        """Set (or with None, clear) a user's role and departments as `changes` names them; False
        when there is no such user."""
        ...


@dataclass(frozen=True, slots=True)
class RoleChanges:
    """What a `mapUser` changes of a user's role: only the fields it names (`role` and `departments`
    None there clear the override, so the PBX's word counts again)."""

    role: Role | None = None
    departments: tuple[str, ...] | None = None
    set_role: bool = False
    set_departments: bool = False

    def __bool__(self) -> bool:
        return self.set_role or self.set_departments


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
        # The newer API says a user's role; the older one says none (then the stored one is kept).
        says_role = account.role is not None
        store.save_user(
            PbxUser(
                login=account.name,
                real_name=account.real_name,
                ext=account.ext,
                telnum=telnum,
                email=account.email,
                groups=memberships,
                presence=account.presence,
                pbx_role=account.role,
            ),
            pbx_says_role=says_role,
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
