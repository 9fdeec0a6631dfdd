"""The REST API: thin views that parse input, call one service or selector, render the result."""

from __future__ import annotations

import logging
from datetime import date

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, parser_classes, throttle_classes
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from diaries import selectors, services
from diaries.rendering import entry_to_markdown
from diaries.selectors import Scope
from diaries.serializers import (
    EntryDetailSerializer,
    EntryListSerializer,
    EntryPageSerializer,
    ErrorSerializer,
    JobSerializer,
    UploadResponseSerializer,
    UploadSerializer,
)
from diaries.throttling import UploadThrottle
from diaries.views import entry_audio_response
from diary_project.errors import ApplicationError, PayloadTooLarge
from transcription.services import recording_create
from transcription.uploads import UploadTooLarge

logger = logging.getLogger(__name__)

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key"),
    404: OpenApiResponse(ErrorSerializer, description="Not found (or not yours)"),
}


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_flatten(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def api_exception_handler(exc, context):
    """Every API error is JSON: {"error": code, "message": text}."""
    if isinstance(exc, UploadTooLarge):
        exc = PayloadTooLarge(str(exc))
    if isinstance(exc, ApplicationError):
        return Response({"error": exc.code, "message": exc.message}, status=exc.status_code)
    if isinstance(exc, DatabaseError):
        logger.error("Database error in %s: %s", context.get("view"), exc)
        return Response(
            {"error": "service_unavailable", "message": "The database is unavailable. Try again shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "30"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        code = exc.default_code if not isinstance(exc.detail, str) else getattr(exc.detail, "code", exc.default_code)
        body = {"error": str(code or "error"), "message": _flatten(exc.detail)}
        if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
            body["fields"] = exc.detail
        response.data = body
    return response


@extend_schema(
    request={"multipart/form-data": UploadSerializer},
    responses={
        202: UploadResponseSerializer,
        **ERRORS,
        413: ErrorSerializer,
        415: ErrorSerializer,
        429: ErrorSerializer,
        503: ErrorSerializer,
    },
    summary="Upload a recording and start its transcription",
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
@throttle_classes([UploadThrottle])
def upload(request):
    try:
        content_length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        content_length = 0
    if content_length > settings.UPLOAD_MAX_BYTES + 64 * 1024:
        raise UploadTooLarge(settings.UPLOAD_MAX_BYTES)  # refused before the body is read
    if len(request.FILES.getlist("audio_file")) > 1:
        raise ApplicationError("Send exactly one audio_file.", code="duplicate_field")
    serializer = UploadSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    job = recording_create(
        owner=request.user,
        uploaded_file=serializer.validated_data["audio_file"],
        recorded_at=serializer.validated_data.get("recorded_at"),
        language=serializer.validated_data.get("language", ""),
    )
    return Response(
        {"message": "File uploaded and transcription started", "job_name": job.job_name},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/jobs/{job.job_name}"},
    )


@extend_schema(responses={200: JobSerializer, **ERRORS}, summary="A transcription job's status")
@api_view(["GET"])
def job_detail(request, job_name: str):
    job = get_object_or_404(selectors.jobs_visible_to(user=request.user, scope=Scope.OWN), job_name=job_name)
    return Response(JobSerializer(job).data)


def _parse_date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ApplicationError(f"{name} must be a date like 2026-01-31.", code="invalid_date") from exc


@extend_schema(
    parameters=[
        OpenApiParameter("from", OpenApiTypes.DATE, description="Recorded on or after this date"),
        OpenApiParameter("to", OpenApiTypes.DATE, description="Recorded on or before this date"),
        OpenApiParameter("q", OpenApiTypes.STR, description="Words to find in title, summary and text"),
        OpenApiParameter("page", OpenApiTypes.INT),
    ],
    responses={200: EntryPageSerializer, **ERRORS},
    operation_id="api_entries_list",
    summary="Your diary entries, newest first",
)
@api_view(["GET"])
def entry_list(request):
    entries = selectors.entry_list(
        user=request.user,
        scope=Scope.OWN,  # the API shows everyone, staff included, only their own entries
        date_from=_parse_date(request.query_params.get("from"), "from"),
        date_to=_parse_date(request.query_params.get("to"), "to"),
        query=request.query_params.get("q", "")[:200],
    )
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(entries, request)
    return paginator.get_paginated_response(EntryListSerializer(page, many=True).data)


@extend_schema(methods=["GET"], responses={200: EntryDetailSerializer, **ERRORS}, summary="One entry, with segments")
@extend_schema(methods=["DELETE"], responses={204: None, **ERRORS}, summary="Delete an entry and its audio")
@api_view(["GET", "DELETE"])
def entry_detail(request, pk: int):
    entry = get_object_or_404(selectors.entries_visible_to(user=request.user, scope=Scope.OWN), pk=pk)
    if request.method == "DELETE":
        services.entry_delete(entry=entry)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(EntryDetailSerializer(entry).data)


@extend_schema(responses={(200, "text/markdown"): OpenApiTypes.STR, **ERRORS}, summary="An entry as Markdown")
@api_view(["GET"])
def entry_markdown(request, pk: int):
    entry = get_object_or_404(selectors.entries_visible_to(user=request.user, scope=Scope.OWN), pk=pk)
    response = HttpResponse(entry_to_markdown(entry), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="entry-{entry.pk}.md"'
    return response


@extend_schema(
    parameters=[
        OpenApiParameter(
            "Range",
            str,
            OpenApiParameter.HEADER,
            description="One byte range, e.g. `bytes=65536-`: players seek with it",
        )
    ],
    responses={
        (200, "audio/*"): OpenApiTypes.BINARY,
        (206, "audio/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range"),
        416: OpenApiResponse(ErrorSerializer, description="The range is outside the audio"),
        **ERRORS,
    },
    summary="An entry's audio (streamed, with byte ranges)",
)
@api_view(["GET"])
def entry_audio(request, pk: int):
    entry = get_object_or_404(selectors.entries_visible_to(user=request.user, scope=Scope.OWN), pk=pk)
    return entry_audio_response(request, entry, detail="api")
