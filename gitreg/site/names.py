"""Subscriptions by name: a list's ``dc:title`` or an image series (``gitreg:series``).

An entry of a subscription's ``imagelists`` may be ``*``, a list UUID, or a
name. A name is resolved against the registry's verified state at each sync:
the title of exactly one list (-> that list's UUID) or a series name (-> the
images with that ``gitreg:series``, in any list). A name that matches
several lists, or both a title and a series, or nothing, is an error that
names the candidates: a site must never guess which images it runs. Pure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gitreg.errors import GitregError
from gitreg.model.imagelist import SERIES
from gitreg.site.config import Subscription


@dataclass(frozen=True)
class ListNames:
    """The names a list of a registry answers to."""

    list_uuid: str
    title: str
    series: tuple[str, ...]


def is_name(selector: str) -> bool:
    """Whether a subscription's ``imagelists`` entry is a name (not ``*`` or a UUID)."""
    if selector == "*":
        return False
    try:
        canonical = str(uuid.UUID(selector))
    except ValueError:
        return True
    return canonical != selector.lower()


def uses_names(subscriptions: Iterable[Subscription]) -> bool:
    return any(is_name(x) for s in subscriptions for x in s.imagelists)


def resolve(subscriptions: Sequence[Subscription], catalogue: Sequence[ListNames], *,
            registry: str) -> tuple[Subscription, ...]:
    """The subscriptions with every name replaced by what it names (raises GitregError)."""
    by_title: dict[str, list[ListNames]] = {}
    series: dict[str, list[ListNames]] = {}
    for names in catalogue:
        by_title.setdefault(names.title, []).append(names)
        for name in names.series:
            series.setdefault(name, []).append(names)
    resolved: list[Subscription] = []
    for subscription in subscriptions:
        lists: list[str] = []
        by_series: list[str] = []
        for selector in subscription.imagelists:
            if not is_name(selector):
                lists.append(selector)
                continue
            titled, in_series = by_title.get(selector, []), series.get(selector, [])
            if len(titled) == 1 and not in_series:
                lists.append(titled[0].list_uuid)
            elif in_series and not titled:
                by_series.append(selector)
            else:
                raise _problem(selector, titled, in_series, registry)
        if lists:
            resolved.append(replace(subscription, imagelists=tuple(dict.fromkeys(lists))))
        for name in by_series:
            # The images of a series, in whichever list they are published.
            resolved.append(replace(subscription, imagelists=("*",),
                                    match={**subscription.match, SERIES: name}))
    return tuple(resolved)


def _problem(name: str, titled: Sequence[ListNames], in_series: Sequence[ListNames],
             registry: str) -> GitregError:
    if not titled and not in_series:
        return GitregError(
            f"subscription to {name!r}: registry {registry} has no list titled so and no "
            "image series of that name",
            hint="`gitreg site available --config FILE` lists what the registry offers")
    candidates = [f"list {n.list_uuid} (titled {n.title!r})" for n in titled]
    candidates += [f"series {name!r} (in list {n.list_uuid})" for n in in_series]
    return GitregError(
        f"subscription to {name!r} is ambiguous in registry {registry}: it names "
        f"{'; '.join(candidates)}", hint="subscribe by list UUID instead")
