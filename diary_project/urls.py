from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from diaries import apis, views

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
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
    path("admin/", admin.site.urls),
]
