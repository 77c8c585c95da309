"""
The admin of projects, their clients and teams: whom a project is done for,
whether it is billable, and which teams' members alone see it and charge
time to it (``Projet.objects.open_to``, the one rule of teams).
"""

from django.contrib import admin
from django.db.models import Count, Exists, OuterRef, Prefetch, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.domain import budget_marks
from timesheet.models import Client, FicheTemps, Projet, Team, TeamMembership
from timesheet.templatetags.timesheet_time import hms
from timesheet.web.admin.common import USERNAME


def projets_link(count: int, **filters: object) -> str:
    """``count`` projects, as a link to the projects' list with ``filters``."""
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', reverse("admin:timesheet_projet_changelist"), query, count)


@admin.register(Projet)
class ProjetAdmin(admin.ModelAdmin):
    list_display = ["designation", "client", "billable", "team_names", "actif", "total_time", "fiches_running"]
    list_filter = ["actif", "billable", "client", "teams"]
    list_select_related = ["client"]
    search_fields = ["designation", "client__name"]
    autocomplete_fields = ["client"]
    filter_horizontal = ["teams"]
    readonly_fields = ["created_at", "updated_at"]
    fields = [
        "designation",
        "client",
        "billable",
        "teams",
        "actif",
        "rounding",
        "rounding_step_minutes",
        "created_at",
        "updated_at",
    ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and {"client", "billable"} & set(form.changed_data):
            # Its time now counts for another client, or is priced differently: every budget is computed again.
            budget_marks.touch_all()

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .order_by("designation")  # kept when grouped, as for the autocomplete's pages
            .prefetch_related("teams")
            .annotate(
                total=Sum("fiches__temps_impute"),
                running=Coalesce(
                    Subquery(
                        FicheTemps.objects.running()
                        .filter(projet=OuterRef("pk"))
                        .order_by()
                        .values("projet")
                        .annotate(count=Count("pk"))
                        .values("count")
                    ),
                    0,
                ),
            )
        )

    @admin.display(description=_("teams"))
    def team_names(self, projet):
        """Its teams, or that it is open to everyone."""
        names = [team.name for team in projet.teams.all()]
        return ", ".join(names) if names else gettext("everyone")

    @admin.display(description=_("total time charged"), ordering="total")
    def total_time(self, projet):
        return hms(projet.total)

    @admin.display(description=_("running fiches"), ordering="running")
    def fiches_running(self, projet):
        return projet.running


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["name", "actif", "projets_count"]
    list_filter = ["actif"]
    search_fields = ["name"]
    fields = ["name", "actif", "created_at"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(projets_count=Count("projets")).order_by("name")

    @admin.display(description=_("projects"), ordering="projets_count")
    def projets_count(self, client):
        return projets_link(client.projets_count, client__id__exact=client.pk)


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    fields = ["user", "lead"]
    autocomplete_fields = ["user"]
    extra = 1


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "members_count", "leads", "projets_count"]
    search_fields = ["name", f"members__{USERNAME}"]
    fields = ["name", "team_projets", "created_at"]
    readonly_fields = ["team_projets", "created_at"]
    inlines = [TeamMembershipInline]

    def get_deleted_objects(self, objs, request):
        """
        As Django's, with each project that the teams alone restrict listed as
        protected: deleting its last team would open it to everyone, so the
        page refuses and names it (restrict it otherwise, or delete it, first).
        """
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        teams = [team.pk for team in objs]
        others = Projet.teams.through.objects.filter(projet_id=OuterRef("pk")).exclude(team_id__in=teams)
        would_open = Projet.objects.filter(teams__in=teams).exclude(Exists(others)).distinct().order_by("designation")
        for projet in would_open:
            protected.append(
                gettext("%(projet)s: its teams would be gone and everyone would see it") % {"projet": projet}
            )
        return deleted, counts, perms_needed, protected

    def get_queryset(self, request):
        leads = TeamMembership.objects.filter(lead=True).select_related("user").order_by(f"user__{USERNAME}")
        return (
            super()
            .get_queryset(request)
            .annotate(members_count=Count("memberships", distinct=True), projets_count=Count("projets", distinct=True))
            .prefetch_related(Prefetch("memberships", queryset=leads, to_attr="lead_memberships"))
        )

    @admin.display(description=_("members"), ordering="members_count")
    def members_count(self, team):
        return team.members_count

    @admin.display(description=_("leads"))
    def leads(self, team):
        return ", ".join(str(membership.user) for membership in team.lead_memberships) or None

    @admin.display(description=_("projects"), ordering="projets_count")
    def projets_count(self, team):
        return projets_link(team.projets_count, teams__id__exact=team.pk)

    @admin.display(description=_("projects restricted to it"))
    def team_projets(self, team):
        """The projects restricted to the team (and perhaps to others): chosen on each project's own page."""
        if team.pk is None:
            return self.get_empty_value_display()
        projets = team.projets.order_by("designation").values_list("pk", "designation")
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:timesheet_projet_change", args=[pk]), name) for pk, name in projets),
        )
        return links or self.get_empty_value_display()
