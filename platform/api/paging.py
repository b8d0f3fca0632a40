"""Lists come in pages: `?limit=&offset=` in, `{"count", "limit", "offset", "items"}` out. The page is cut
in the database (one query for the rows, one for the count), so a call costs the same at any size."""

from functools import cache

from django.conf import settings
from ninja import Schema
from pydantic import Field, create_model


class PageParams(Schema):
    limit: int = Field(50, ge=1, le=1000, description="At most ACCRETE_API_PAGE_MAX (default 200).")
    offset: int = Field(0, ge=0, le=10**9)


@cache
def page_of(schema: type) -> type:
    return create_model(f"{schema.__name__}Page", __base__=Schema, count=(int, ...), limit=(int, ...),
                        offset=(int, ...), items=(list[schema], ...))


def paged(qs, to_dict, params: PageParams) -> dict:
    limit = min(params.limit, settings.ACCRETE_API_PAGE_MAX)
    if isinstance(qs, list):
        rows, count = qs[params.offset:params.offset + limit], len(qs)
    else:
        rows, count = list(qs[params.offset:params.offset + limit]), qs.count()
    return {"count": count, "limit": limit, "offset": params.offset, "items": [to_dict(row) for row in rows]}
