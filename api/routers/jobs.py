"""/v1/ingest-jobs: the state of background ingest jobs (also at /v1/jobs, the earlier path)."""

from __future__ import annotations

from fastapi import APIRouter

from ingest.jobs import Job

from ..deps import ServicesDep
from ..errors import NotFound
from ..schemas import FileError, JobOut

router = APIRouter(prefix="/v1/ingest-jobs", tags=["ingest jobs"])
legacy = APIRouter(prefix="/v1/jobs", tags=["ingest jobs"], include_in_schema=False)


def job_out(job: Job) -> JobOut:
    return JobOut(job_id=job.id, collection=job.collection, state=job.state,
                  files_total=job.files_total, files_done=job.files_done,
                  chunks_added=job.chunks_added, errors=[FileError(**e) for e in job.errors],
                  results=job.results, note=job.note, created_at=job.created_at,
                  started_at=job.started_at, finished_at=job.finished_at,
                  current_file=job.current_file, current_chunks=job.current_chunks,
                  current_chunks_total=job.current_chunks_total,
                  current_pages_done=job.current_pages_done,
                  current_pages_total=job.current_pages_total)


@router.get("", response_model=list[JobOut])
@legacy.get("", response_model=list[JobOut])
def list_jobs(services: ServicesDep) -> list[JobOut]:
    return [job_out(j) for j in services.ingest_worker.store.recent()]


@router.get("/{job_id}", response_model=JobOut)
@legacy.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, services: ServicesDep) -> JobOut:
    job = services.ingest_worker.store.get(job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job_out(job)
