"""``/v1/files``: upload, list, read and delete datasets, as OpenAI's Files API does.

Bytes go to the store under a name the server makes up; the client's file name is kept only
as the file's ``filename``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from preftune.fsutil import write_text
from preftune.service import queue, retention
from preftune.service.auth import Principal
from preftune.service.db import File
from preftune.service.deps import CurrentPrincipal, Service, ServiceDep, quota_exceeded
from preftune.service.jobspec import InvalidRequest
from preftune.service.schemas import (
    ID_PATTERN,
    FileDeleted,
    FileList,
    FilePublic,
    FileReport,
    JobError,
    ProblemPublic,
    error_responses,
)
from preftune.service.store import TooLarge, display_name
from preftune.service.validation import run_task

router = APIRouter(prefix="/v1/files", tags=["files"])

PURPOSE = "fine-tune"
CHUNK = 1 << 20
FileId = Annotated[str, Path(pattern=ID_PATTERN, description="A file id (file-...).")]

# The form is parsed by create_file itself, after the key was checked, rather than by FastAPI
# before any dependency runs: an anonymous client must not get a large body spooled. This
# describes that form in the OpenAPI document.
_UPLOAD_FORM: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "purpose"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "JSONL, JSON, parquet or CSV preference data."},
            "purpose": {"type": "string", "enum": [PURPOSE]},
        }}}}}}


@router.post("", response_model=FilePublic, openapi_extra=_UPLOAD_FORM,
             responses=error_responses(400, 429))
async def create_file(request: Request, principal: CurrentPrincipal,
                      service: ServiceDep) -> FilePublic:
    """Upload a dataset: multipart with ``file`` and ``purpose=fine-tune``. A tenant at its
    file quota gets 429 before the body is read."""
    room = await run_in_threadpool(_room, service, principal)
    async with request.form(max_files=1, max_fields=8) as form:
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != PURPOSE:
            shown = "missing" if purpose is None else repr(purpose)[:80]
            raise InvalidRequest(f"purpose is {shown}: this service stores fine-tuning data "
                                 "only", "purpose", [f"send purpose={PURPOSE}"])
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("no file in the request: expected a multipart part named "
                                 "'file' holding the data", "file",
                                 ["send multipart/form-data with the fields file and purpose"])
        row = await run_in_threadpool(_store_upload, service, principal, upload, room)
    return FilePublic.from_row(row)


def _room(service: Service, principal: Principal) -> int:
    """The bytes the tenant may still store; 429 when it holds ``max_files`` files or has
    used all of ``max_stored_mb`` (results count too)."""
    quota = service.config.quota_for(principal.tenant_name)
    usage = queue.tenant_usage(service.db, principal.tenant_id)
    if usage["files"] >= quota.max_files:
        raise quota_exceeded(f"your organization stores {usage['files']} files; its quota is "
                             f"max_files={quota.max_files}", "max_files", _DELETE_HINT, "file")
    room = quota.max_stored_mb * 2**20 - usage["stored_bytes"]
    if room <= 0:
        raise _over_storage(quota.max_stored_mb, 0)
    return int(room)


def _store_upload(service: Service, principal: Principal, upload: UploadFile,
                  room: int) -> File:
    """Stream the spooled part into the store, then record it; no row without bytes.

    The stream is cut off at the smaller of the upload limit and the tenant's ``room``, so an
    upload over its quota is never stored whole.
    """
    file_id = queue.new_id("file")
    chunks = iter(lambda: upload.file.read(CHUNK), b"")
    quota = service.config.quota_for(principal.tenant_name)
    try:
        with service.store.saving(file_id, chunks, upload.filename,
                                  min(service.max_upload_bytes, room)) as (storage_name, size):
            return queue.add_file(service.db, file_id, principal.tenant_id,
                                  display_name(upload.filename), PURPOSE, size, storage_name,
                                  max_files=quota.max_files,
                                  max_bytes=quota.max_stored_mb * 2**20)
    except TooLarge:
        if room >= service.max_upload_bytes:
            raise
        raise _over_storage(quota.max_stored_mb, room) from None
    except queue.StoreFull as full:  # another upload of the tenant's took the room meanwhile
        if full.quota == "max_files":
            raise quota_exceeded(f"your organization stores {full.used} files; its quota is "
                                 f"max_files={quota.max_files}", "max_files", _DELETE_HINT,
                                 "file") from None
        raise _over_storage(quota.max_stored_mb, max(0, full.cap - full.used)) from None


_DELETE_HINT = "delete files you no longer need: DELETE /v1/files/{id} (preftune files delete)"


def _over_storage(max_stored_mb: int, room: int) -> Exception:
    return quota_exceeded(f"this file would take your organization's files past its quota of "
                          f"max_stored_mb={max_stored_mb} MiB ({room:,} bytes are left)",
                          "max_stored_mb", _DELETE_HINT, "file")


@router.get("", response_model=FileList, responses=error_responses(404))
def list_files(
    principal: CurrentPrincipal, service: ServiceDep,
    purpose: Annotated[str | None, Query(pattern=r"^[a-z_-]{1,40}$")] = None,
    after: Annotated[str | None, Query(pattern=ID_PATTERN,
                                       description="The last file id of the page before.")
                     ] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    """The caller's files, newest first unless ``order=asc``."""
    with service.db.session() as session:
        query = select(File).where(File.tenant_id == principal.tenant_id)
        if purpose is not None:
            query = query.where(File.purpose == purpose)
        if after is not None:
            anchor = session.get(File, after)
            if anchor is None or anchor.tenant_id != principal.tenant_id:
                raise queue.NotFound(f"no file {after!r} (the 'after' cursor)",
                                     ["pass the id of the last file of the previous page"])
            if order == "desc":
                query = query.where(or_(File.created_at < anchor.created_at,
                                        (File.created_at == anchor.created_at)
                                        & (File.id < anchor.id)))
            else:
                query = query.where(or_(File.created_at > anchor.created_at,
                                        (File.created_at == anchor.created_at)
                                        & (File.id > anchor.id)))
        if order == "desc":
            query = query.order_by(File.created_at.desc(), File.id.desc())
        else:
            query = query.order_by(File.created_at, File.id)
        rows = list(session.scalars(query.limit(limit + 1)))
    return FileList(data=[FilePublic.from_row(r) for r in rows[:limit]],
                    has_more=len(rows) > limit)


@router.get("/{file_id}", response_model=FilePublic, responses=error_responses(404))
def get_file(file_id: FileId, principal: CurrentPrincipal, service: ServiceDep) -> FilePublic:
    return FilePublic.from_row(queue.file_row(service.db, principal.tenant_id, file_id))


@router.get("/{file_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "The file's bytes, as uploaded."},
                       **error_responses(404)})
def file_content(file_id: FileId, principal: CurrentPrincipal,
                 service: ServiceDep) -> FileResponse:
    row = queue.file_row(service.db, principal.tenant_id, file_id)
    path = service.store.file_path(row.storage_name)
    if not path.is_file():
        raise queue.NotFound(f"the bytes of file {file_id} are missing from the server's "
                             "store", ["upload the data again; tell the server's operator"])
    return FileResponse(path, media_type="application/octet-stream", filename=row.filename)


MAX_PROBLEMS = 200  # a report lists this many problems by location, and counts them all


@router.get("/{file_id}/report", response_model=FileReport,
            responses=error_responses(404, 503))
def file_report(file_id: FileId, principal: CurrentPrincipal,
                service: ServiceDep) -> FileReport:
    """preftune extension: the file checked as ``preftune validate`` checks it, with the
    default field names: every problem with its record, line and field, duplicate and
    identical pairs, counts and character lengths.

    The file is read in a child process under the server's validation memory and time
    limits (a file over them gets a report whose ``error`` says which), never in the API
    process. The report is kept with the file: asking again is answered at once.
    """
    row = queue.file_row(service.db, principal.tenant_id, file_id)
    cached = service.store.report_path(row.id)
    if cached.is_file():
        return FileReport.model_validate_json(cached.read_bytes())
    path = service.store.file_path(row.storage_name)
    if not path.is_file():
        raise queue.NotFound(f"the bytes of file {file_id} are missing from the server's "
                             "store", ["upload the data again; tell the server's operator"])
    result = run_task({"task": "report", "training": str(path), "filename": row.filename,
                       "max_problems": MAX_PROBLEMS}, service.config.limits)
    head = {"file_id": row.id, "filename": row.filename}
    if result.get("error") is not None:  # over a limit: a report of that, not kept
        error = result["error"]
        return FileReport(**head, valid=False, format=None, records=0, pairs=0,
                          problem_count=1, problems_shown=1, warnings=[],
                          problems=[ProblemPublic(message=error["message"],
                                                  text=error["message"], file=row.filename)],
                          error=JobError.model_validate(error))
    found = result["report"]
    report = FileReport.model_validate({
        **{k: v for k, v in found.items() if k not in ("source", "file_id", "filename")},
        **head, "problems_shown": len(found["problems"])})
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_text(cached, report.model_dump_json())
    return report


@router.delete("/{file_id}", response_model=FileDeleted, responses=error_responses(404, 409))
def delete_file(file_id: FileId, principal: CurrentPrincipal,
                service: ServiceDep) -> FileDeleted:
    """Delete a file no unfinished job reads (checked and deleted under the file's row lock,
    so no job can start reading it in between)."""
    retention.delete_file(service.db, service.store, principal.tenant_id, file_id)
    return FileDeleted(id=file_id, deleted=True)
