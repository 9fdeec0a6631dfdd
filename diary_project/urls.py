from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from diaries import apis, views

urlpatterns = [
    path("", RedirectView.as_view(url="/diary/", permanent=False)),
    path("upload", apis.upload, name="upload"),
    path("api/upload", apis.upload, name="api-upload"),
    path("api/jobs/<str:job_name>", apis.job_detail, name="job-detail"),
    path("api/entries/", apis.entry_list, name="entry-list"),
    path("api/entries/<int:pk>", apis.entry_detail, name="entry-detail"),
    path("api/entries/<int:pk>/markdown", apis.entry_markdown, name="entry-markdown"),
    path("api/entries/<int:pk>/audio", apis.entry_audio, name="entry-audio"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", views.healthz, name="healthz"),
    # The client's page: sign in, record or upload, follow the job, read entries.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="diaries/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("diary/", views.diary_home, name="diary-home"),
    path("diary/entries/<int:pk>/card", views.diary_entry_card, name="diary-entry-card"),
    path("admin/", admin.site.urls),
]


def not_found(request, exception=None):
    """API paths answer JSON even for URLs that match no route; pages keep Django's 404."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith(("/api/", "/upload")):
        return JsonResponse({"error": "not_found", "message": "Not found."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
