"""The notices the inbound function sends: an uninstall (to the alert topic: one message that
says "uninstalled", never connector.down) and an install that could not be verified because
the authorisation server did not answer (to the operations topic: Bitrix24 never sends an
event again, so a person must ask the portal's admin to reinstall)."""

from __future__ import annotations

from datetime import datetime

from .alerts import SUBJECT_LIMIT, Alert, AlertEvent, ascii_line
from .text import MESSAGE_LIMIT, clip
from .timestamps import stamp


def _notice(portal: str, kind: str, subject: str, message: str, now: datetime) -> Alert:
    """A notice about the application on `portal` (not about a target: connector and line
    are `*`), identified by its kind and time so a retried publish cannot send it twice."""
    return Alert(
        id=f"{portal}|{kind}|{stamp(now)}",
        event=AlertEvent.CHECK_FAILED,
        portal=portal,
        connector="*",
        line="*",
        subject=ascii_line(subject, SUBJECT_LIMIT),
        message=clip(message, MESSAGE_LIMIT),
        created_at=now,
    )


def uninstalled(portal: str, now: datetime) -> Alert:
    """The monitor's application was uninstalled from `portal`: its pair is deleted, so the
    portal is no longer checked."""
    return _notice(
        portal,
        "uninstalled",
        f"Monitor uninstalled from {portal}",
        f"The connector monitor's application was uninstalled from {portal} at "
        f"{stamp(now)}.\n\nIts tokens are deleted and the portal is no longer checked. "
        "Targets that still name it are reported as configuration errors until they are "
        "removed, or until the application is installed again.",
        now,
    )


def install_unverified(portal: str, why: str, now: datetime) -> Alert:
    """An install arrived and could not be verified (the authorisation server did not answer):
    nothing was stored, and Bitrix24 will not send it again."""
    return _notice(
        portal,
        "install-unverified",
        f"Install on {portal} not verified",
        f"An install of the monitor's application on {portal} arrived at {stamp(now)} "
        f"and could not be verified: {why}.\n\nNothing was stored, and Bitrix24 does not "
        "send the install again: once the authorisation server answers, ask the portal's "
        "administrator to reinstall the application (or re-authorise it with "
        f"`monitorctl portals authorize {portal}`).",
        now,
    )


def events_not_bound(portal: str, now: datetime) -> Alert:
    """The portal refused the event bindings: the install is stored and checked, but an
    uninstall or an update of the application would go unseen."""
    return _notice(
        portal,
        "events-not-bound",
        f"Events not bound on {portal}",
        f"The monitor's application is installed on {portal} and its tokens are stored, "
        f"but the portal refused to bind its events at {stamp(now)}: an uninstall or an "
        "update of the application will not reach the monitor. Reinstall the application "
        "as a portal administrator.",
        now,
    )
