"""Flows through the real client, plus the raw HTTP shapes the client relies on.

Expected bodies were taken from Prefect 3.9.1's own server (`prefect server start`),
which this suite also passes against (PREFECT_SERVER_BIN pointing at a wrapper).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from prefect import flow
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowFilterName,
    FlowFilterTags,
)
from prefect.client.schemas.sorting import FlowSort
from prefect.exceptions import ObjectNotFound


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def names_of(flows) -> list[str]:
    return [f.name for f in flows]


@pytest.mark.flows
class TestFlowsThroughClient:
    def test_create_flow_from_object_is_idempotent(self, sync_client):
        name = unique("e2e-obj")

        @flow(name=name)
        def my_flow() -> int:
            return 1

        first = sync_client.create_flow(my_flow)
        second = sync_client.create_flow(my_flow)
        assert isinstance(first, uuid.UUID)
        assert first == second

    def test_create_flow_from_name_and_read_back(self, sync_client):
        name = unique("e2e-name")
        flow_id = sync_client.create_flow_from_name(name)
        assert sync_client.create_flow_from_name(name) == flow_id

        by_id = sync_client.read_flow(flow_id)
        assert by_id.id == flow_id
        assert by_id.name == name
        assert by_id.tags == []
        assert by_id.created is not None and by_id.updated is not None

        by_name = sync_client.read_flow_by_name(name)
        assert by_name.id == flow_id
        assert by_name.name == name

    def test_create_answers_201_then_200(self, http):
        name = unique("e2e-status")
        created = http.post("flows/", json={"name": name})
        assert created.status_code == 201, created.text
        again = http.post("flows/", json={"name": name})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == created.json()["id"]

    def test_filter_by_name_like_id_and_tags(self, sync_client):
        marker = uuid.uuid4().hex[:10]
        names = [f"e2e-filter-{marker}-{i}" for i in range(3)]
        ids = [sync_client.create_flow_from_name(n) for n in names]
        # Tags are only writable through PATCH in the client's vocabulary.
        response = sync_client._client.patch(
            f"/flows/{ids[0]}", json={"tags": ["e2e", f"t-{marker}"]}
        )
        assert response.status_code == 204
        response = sync_client._client.patch(f"/flows/{ids[1]}", json={"tags": ["e2e"]})
        assert response.status_code == 204

        by_name = sync_client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[names[0], names[2]]))
        )
        assert sorted(names_of(by_name)) == [names[0], names[2]]

        by_like = sync_client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(like_=f"filter-{marker}"))
        )
        assert sorted(names_of(by_like)) == names

        by_id = sync_client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=[ids[1]]))
        )
        assert [f.id for f in by_id] == [ids[1]]

        by_tags = sync_client.read_flows(
            flow_filter=FlowFilter(
                name=FlowFilterName(like_=marker),
                tags=FlowFilterTags(all_=["e2e", f"t-{marker}"]),
            )
        )
        assert names_of(by_tags) == [names[0]]
        assert set(by_tags[0].tags) == {"e2e", f"t-{marker}"}

        one_tag = sync_client.read_flows(
            flow_filter=FlowFilter(
                name=FlowFilterName(like_=marker), tags=FlowFilterTags(all_=["e2e"])
            )
        )
        assert sorted(names_of(one_tag)) == names[:2]

    def test_sort_limit_offset(self, sync_client):
        marker = uuid.uuid4().hex[:10]
        names = [f"e2e-sort-{marker}-{c}" for c in "abcd"]
        for n in names:
            sync_client.create_flow_from_name(n)
        only_mine = FlowFilter(name=FlowFilterName(like_=f"sort-{marker}"))

        default = sync_client.read_flows(flow_filter=only_mine)
        assert names_of(default) == names  # NAME_ASC is the server's default

        desc = sync_client.read_flows(flow_filter=only_mine, sort=FlowSort.NAME_DESC)
        assert names_of(desc) == names[::-1]

        page = sync_client.read_flows(
            flow_filter=only_mine, sort=FlowSort.NAME_DESC, limit=2, offset=1
        )
        assert names_of(page) == [names[2], names[1]]

        past_end = sync_client.read_flows(flow_filter=only_mine, offset=10)
        assert past_end == []

    def test_update_tags_via_patch(self, sync_client):
        flow_id = sync_client.create_flow_from_name(unique("e2e-patch"))
        before = sync_client.read_flow(flow_id)
        response = sync_client._client.patch(
            f"/flows/{flow_id}", json={"tags": ["a", "b"]}
        )
        assert response.status_code == 204
        after = sync_client.read_flow(flow_id)
        assert after.tags == ["a", "b"]
        assert after.updated >= before.updated

    def test_patch_missing_flow_is_404(self, http):
        response = http.patch(f"flows/{uuid.uuid4()}", json={"tags": []})
        assert response.status_code == 404
        assert response.json() == {"detail": "Flow not found"}

    def test_count(self, sync_client):
        marker = uuid.uuid4().hex[:10]
        for i in range(3):
            sync_client.create_flow_from_name(f"e2e-count-{marker}-{i}")
        response = sync_client._client.post(
            "/flows/count", json={"flows": {"name": {"like_": f"count-{marker}"}}}
        )
        assert response.status_code == 200
        assert response.json() == 3

        everything = sync_client._client.post("/flows/count", json={})
        assert everything.status_code == 200
        assert everything.json() >= 3

    def test_missing_flow_raises(self, sync_client):
        # read_flow surfaces the 404 as an HTTP error; delete_flow maps it to
        # ObjectNotFound. Both paths are what the 3.9.1 client really does.
        with pytest.raises(httpx.HTTPStatusError) as excinfo:
            sync_client.read_flow(uuid.uuid4())
        assert excinfo.value.response.status_code == 404
        with pytest.raises(ObjectNotFound):
            sync_client.delete_flow(uuid.uuid4())

    def test_delete_flow(self, sync_client):
        name = unique("e2e-delete")
        flow_id = sync_client.create_flow_from_name(name)
        sync_client.delete_flow(flow_id)
        with pytest.raises(httpx.HTTPStatusError) as excinfo:
            sync_client.read_flow(flow_id)
        assert excinfo.value.response.status_code == 404
        with pytest.raises(ObjectNotFound):
            sync_client.delete_flow(flow_id)
        assert sync_client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name]))
        ) == []

    def test_async_client(self, api_url):
        import asyncio

        from prefect.client.orchestration import get_client

        name = unique("e2e-async")

        async def scenario() -> None:
            async with get_client() as client:
                flow_id = await client.create_flow_from_name(name)
                assert (await client.read_flow(flow_id)).name == name
                assert (await client.read_flow_by_name(name)).id == flow_id
                found = await client.read_flows(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[name]))
                )
                assert [f.id for f in found] == [flow_id]
                await client.delete_flow(flow_id)

        asyncio.run(scenario())


@pytest.mark.api_errors
class TestErrorShapes:
    def test_missing_body_field_is_422(self, http):
        response = http.post("flows/", json={})
        assert response.status_code == 422
        body = response.json()
        # Prefect's validation handler wraps pydantic's errors in this envelope.
        assert body["exception_message"] == "Invalid request received."
        assert body["exception_detail"][0]["loc"] == ["body", "name"]
        assert body["exception_detail"][0]["type"] == "missing"

    def test_wrong_type_is_422(self, http):
        response = http.post("flows/", json={"name": 123})
        assert response.status_code == 422
        assert response.json()["exception_detail"][0]["loc"] == ["body", "name"]

    def test_bad_filter_is_422_not_500(self, http):
        response = http.post("flows/filter", json={"limit": -1})
        assert response.status_code == 422
        response = http.post("flows/filter", json={"sort": "NOT_A_SORT"})
        assert response.status_code == 422

    def test_non_uuid_path_does_not_match_route(self, http):
        # Starlette's {id:uuid} converter never matches, so this is a route miss.
        response = http.get("flows/not-a-uuid")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}

    def test_missing_flow_is_404(self, http):
        response = http.get(f"flows/{uuid.uuid4()}")
        assert response.status_code == 404
        assert response.json() == {"detail": "Flow not found"}
        response = http.get(f"flows/name/{unique('absent')}")
        assert response.status_code == 404
        assert response.json() == {"detail": "Flow not found"}

    def test_unknown_route_is_404(self, http):
        response = http.get("no/such/route")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}


@pytest.mark.meta
class TestMetaEndpoints:
    def test_health(self, http):
        response = http.get("health")
        assert response.status_code == 200
        assert response.json() is True

    def test_admin_version(self, http):
        response = http.get("admin/version")
        assert response.status_code == 200
        assert response.json().startswith("3.9")

    def test_csrf_token_disabled(self, http):
        response = http.get("csrf-token", params={"client": "x"})
        assert response.status_code == 422
        assert response.json() == {"detail": "CSRF protection is disabled."}
