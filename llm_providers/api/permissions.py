"""Who may use the staff endpoints (SPEC §8): the admin's own rules, not ``is_staff`` alone.

A staff account is what lets someone into the admin; what they may do there is the model
permissions an administrator gave them. The API asks the same questions, so a staff user who
cannot add a key in the admin cannot add one through ``keys/`` either.
"""

from __future__ import annotations

from rest_framework.permissions import DjangoModelPermissions, IsAdminUser

_VIEW = "%(app_label)s.view_%(model_name)s"


class AdminModelPermissions(DjangoModelPermissions):
    """DRF's ``DjangoModelPermissions`` with the admin's view permission for reading: GET,
    HEAD and OPTIONS need ``view_<model>``, POST ``add_``, PUT/PATCH ``change_``, DELETE
    ``delete_``. The model is the view's ``queryset``'s (superusers have every permission)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": [_VIEW],
        "HEAD": [_VIEW],
        "OPTIONS": [_VIEW],
    }


#: Staff (as the admin requires) holding the model permission the method needs. A view using
#: it sets ``queryset`` to its model's, e.g. ``LedgerEntry.objects.none()`` for a report.
StaffModelPermissions = IsAdminUser & AdminModelPermissions
