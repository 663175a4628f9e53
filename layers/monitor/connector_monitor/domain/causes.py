"""What an alert says about its cause: one word for the subject, a severity and what to do, by
cause and by how the deployment lists its targets. The words are derived from `Cause` (why the
monitor could not see) plus one cause of its own for an answered outage, `connector_down`.

An alert carries the cause as its `cause` message attribute, so SNS subscriptions can route on
it (README, "Alert causes").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .results import Cause


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Deployment(StrEnum):
    """Where the watched targets are listed, so advice names the right place to fix them."""

    TARGETS = "targets"  # the stack's Targets parameter (TARGETS): a change is a redeploy
    REGISTRY = "registry"  # the registry: `monitorctl targets` or the API's /registry routes


CONNECTOR_DOWN = "connector_down"  # the portal answered: the connector does not work
NOT_KNOWN = "-"  # a recovery whose blind spell's cause was not recorded (stored before it was)


@dataclass(frozen=True)
class CauseWords:
    word: str  # in the subject, upper case
    severity: Severity  # of the alert that opens an incident with this cause
    meaning: str  # the first sentence's end: what this cause means for the client
    advice: str  # what to do; `{portal}` is replaced by the portal's address
    registry_advice: str | None = None  # when the registry needs other words than TARGETS

    def advice_for(self, deployment: Deployment, portal: str) -> str:
        text = self.advice
        if deployment is Deployment.REGISTRY and self.registry_advice:
            text = self.registry_advice
        return text.replace("{portal}", portal or "DOMAIN")


_PASSING = "nothing while it passes: the monitor tries again on every run. If it lasts, "

WORDS: dict[str, CauseWords] = {
    CONNECTOR_DOWN: CauseWords(
        "CONNECTOR DOWN",
        Severity.CRITICAL,
        "customer messages are not reaching operators",
        "check the connector's settings on the open line and the application's own service.",
    ),
    Cause.CONFIGURATION: CauseWords(
        "MISCONFIGURED",
        Severity.WARNING,
        "the portal answers, but the entry names something it does not have",
        "correct the entry in the Targets parameter (domain/connector/line) and redeploy.",
        "correct the registry entry: `monitorctl targets remove` the wrong one and "
        "`monitorctl targets add` the right one.",
    ),
    Cause.NO_TOKENS: CauseWords(
        "NO TOKENS",
        Severity.WARNING,
        "the monitor holds no usable credentials for this portal",
        "install the monitor's application on the portal and put its token pair in the "
        "secret (README, 'A few portals'); the next run uses it, no redeploy needed.",
        "install the monitor's application on the portal and store its token pair with "
        "`monitorctl tokens set {portal}`, or remove the portal's entries with "
        "`monitorctl targets remove`.",
    ),
    Cause.AUTH_LOST: CauseWords(
        "APP REVOKED",
        Severity.WARNING,
        "the portal no longer accepts the monitor's application (uninstalled or its tokens "
        "revoked)",
        "re-authorise the application with `monitorctl portals authorize {portal}` (a portal "
        "administrator opens the link it prints; the stack stores the new tokens), or reinstall "
        "it. Tokens obtained another way go in the secret, or with `monitorctl tokens set "
        "{portal}` if the fleet's token table holds the portal's pair.",
        "re-authorise the application with `monitorctl portals authorize {portal}` (a portal "
        "administrator opens the link it prints; the stack stores the new tokens), or reinstall "
        "it. Tokens obtained another way go in with `monitorctl tokens set {portal}`.",
    ),
    Cause.ACCESS_DENIED: CauseWords(
        "ACCESS DENIED",
        Severity.WARNING,
        "the portal refuses the monitor's application this call",
        "give the application the imopenlines and imconnector scopes, check that the user "
        "who installed it may use Open Lines and that the plan includes REST, then reinstall it.",
    ),
    Cause.PORTAL_UNPAID: CauseWords(
        "PORTAL UNPAID",
        Severity.CRITICAL,
        "the portal's plan has lapsed (PAYMENT_REQUIRED), and its connectors may stop with it",
        "ask the client to renew the portal's plan; the monitor sees the portal again by itself.",
    ),
    Cause.PORTAL_DELETED: CauseWords(
        "PORTAL DELETED",
        Severity.CRITICAL,
        "the portal no longer exists (PORTAL_DELETED)",
        "confirm with the client; if the portal is gone for good, remove its entries from the "
        "Targets parameter (and redeploy) and its token pair from the secret.",
        "confirm with the client; if the portal is gone for good, remove its entries with "
        "`monitorctl targets remove` and its tokens from the token table.",
    ),
    Cause.RATE_LIMITED: CauseWords(
        "RATE LIMITED",
        Severity.WARNING,
        "the portal is refusing requests over its REST limits",
        _PASSING + "another application is using up the portal's REST limits: find it in the "
        "portal's REST usage and slow it down.",
    ),
    Cause.PORTAL_FAILING: CauseWords(
        "PORTAL FAILING",
        Severity.WARNING,
        "the portal does not answer properly (errors, timeouts, or REST blocked)",
        _PASSING + "open the portal in a browser; if it fails there too, contact Bitrix24 support.",
    ),
    Cause.BAD_ANSWER: CauseWords(
        "BAD ANSWER",
        Severity.WARNING,
        "the portal's answer could not be read",
        _PASSING + "check that the address is the portal itself, not a proxy or a "
        "maintenance page.",
    ),
    Cause.BAD_REQUEST: CauseWords(
        "REQUEST REFUSED",
        Severity.WARNING,
        "the portal rejected the monitor's request",
        "check the entry's connector id and line in the Targets parameter; if they are right, "
        "report it as a monitor bug with the detail above.",
        "check the registry entry's connector id and line (`monitorctl targets list`); if they "
        "are right, report it as a monitor bug with the detail above.",
    ),
    Cause.DEADLINE: CauseWords(
        "CHECK TIMED OUT",
        Severity.WARNING,
        "the run ran out of time before this portal answered",
        _PASSING + "the run holds more than it can check in its time: deploy with FanOut=true "
        "(README, 'A fleet').",
    ),
    Cause.MONITOR_ERROR: CauseWords(
        "MONITOR ERROR",
        Severity.WARNING,
        "the monitor's own side failed (its secret, table or code); no portal is at fault",
        "read the checker function's logs for the run named above.",
    ),
}


def words_for(cause: str) -> CauseWords:
    """The words of `cause` (a `Cause` value or `connector_down`); unknown ones read as a
    monitor error rather than failing an alert."""
    return WORDS.get(cause, WORDS[Cause.MONITOR_ERROR])
