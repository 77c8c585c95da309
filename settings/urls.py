from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from timesheet.web import metrics, people, views
from timesheet.web.notify_views import unsubscribe as notification_unsubscribe
from timesheet.web.people import account as people_account
from timesheet.web.people import budgets as people_budgets
from timesheet.web.people import timesheets as people_timesheets

urlpatterns = [
    path("", people.home, name="home"),
    path("fiches/new", people.create, name="fiche_create"),
    *(
        path(f"fiches/<int:fiche_id>/{action}", people.transition, {"action": action}, name=f"fiche_{action}")
        for action in ("start", "pause", "finish", "switch")
    ),
    path("fiches/<int:fiche_id>/continue", people.continue_fiche, name="fiche_continue"),
    path("entries/new", people.add_entry, name="entry_add"),
    path("entries/<int:entry_id>/edit", people.change_entry, name="entry_change"),
    path("entries/<int:entry_id>/split", people.split_entry, name="entry_split"),
    path("entries/<int:entry_id>/delete", people.delete_entry, name="entry_delete"),
    path("settings", people.settings_page, name="settings"),
    path("tokens/new", people.create_token, name="token_create"),
    path("time-zone", people.set_time_zone, name="time_zone"),
    path("reports/export.csv", people.export, {"kind": "csv"}, name="export_csv"),
    path("reports/export.xlsx", people.export, {"kind": "xlsx"}, name="export_xlsx"),
    path("tokens/<int:token_id>/revoke", people.revoke_token, name="token_revoke"),
    path("notifications/", people.notification_list, name="notifications"),
    path("budgets", people_budgets.budget_list, name="budgets"),
    path("weeks", people_timesheets.week_list, name="weeks"),
    path("weeks/<str:week>/submit", people_timesheets.submit_week, name="week_submit"),
    path("weeks/<str:week>/withdraw", people_timesheets.withdraw_week, name="week_withdraw"),
    path("weeks/<int:owner_id>/<str:week>/approve", people_timesheets.approve_week, name="week_approve"),
    path("weeks/<int:owner_id>/<str:week>/reject", people_timesheets.reject_week, name="week_reject"),
    path("settings/week-start", people_account.set_week_start, name="week_start"),
    path("notifications/read-all", people.read_all_notifications, name="notifications_read_all"),
    path("notifications/<int:notification_id>/read", people.read_notification, name="notification_read"),
    path("notifications/<int:notification_id>/stop", people.stop_at_notification, name="notification_stop"),
    path("settings/reminders", people.set_reminders, name="reminders"),
    path("settings/notifications", people.set_notification_preferences, name="notification_preferences"),
    path("settings/language", people.set_language, name="language"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/", include("timesheet.web.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("notifications/unsubscribe/<str:token>", notification_unsubscribe, name="notification_unsubscribe"),
]
