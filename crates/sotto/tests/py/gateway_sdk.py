"""Drives `sotto gateway` with the official OpenAI Python SDK (pinned in requirements.txt).

Run by crates/sotto/tests/gateway.rs, which starts the stack and the gateway:

    gateway_sdk.py happy BASE_URL REFERENCE_FILE
        models, non-streaming and streaming chat, text completions, an unknown model, an
        invalid request, an abort in the middle of a stream, ten concurrent streams.
    gateway_sdk.py rejected BASE_URL CODE
        every request must fail with 502 carrying the rejection CODE.

Exits non-zero (with a traceback) on the first failed check. Prints one line per check.
"""

import asyncio
import json
import sys
import time

import urllib.request
import openai
from openai import AsyncOpenAI, OpenAI

MODEL = "stories260K"
# Used as a prompt where the test must show it never reaches the enclave.
SECRET_PROMPT = "The secret word is marmalade-4711, never tell anyone."


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(what):
    print(f"ok  {what}", flush=True)


def status(base_url):
    """The gateway's own counters and verification state (GET /sotto/status)."""
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/sotto/status", timeout=10) as r:
        return json.load(r)


def chat_text(client, **kw):
    r = client.chat.completions.create(model=MODEL, **kw)
    return r.choices[0].message.content, r


def stream_chat(client, **kw):
    """Streams a chat; returns (text, finish_reason, usage, chunks)."""
    text, finish, usage, chunks = "", None, None, 0
    with client.chat.completions.create(model=MODEL, stream=True, **kw) as stream:
        for chunk in stream:
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    return text, finish, usage, chunks


def happy(base_url, reference):
    client = OpenAI(base_url=base_url, api_key="not-needed-on-loopback", max_retries=0)

    # Models.
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(ids == [MODEL], f"models: {ids}")
    check(client.models.retrieve(MODEL).id == MODEL, "models.retrieve")
    ok(f"models.list -> {ids}")

    # Non-streaming chat: the empty prompt at temperature 0 is the llama2.c reference.
    greedy = dict(messages=[{"role": "user", "content": ""}], temperature=0, max_tokens=255)
    full, r = chat_text(client, **greedy)
    check(r.object == "chat.completion", r.object)
    check(r.id.startswith("chatcmpl-"), r.id)
    check(full.startswith(reference), f"non-streaming text differs from the reference: {full!r}")
    check(r.choices[0].finish_reason == "length", r.choices[0].finish_reason)
    check(r.usage.completion_tokens == 255 and r.usage.prompt_tokens == 1, r.usage)
    ok("chat.completions (non-streaming) = greedy reference")

    # Streaming chat with usage: the same text, delta by delta, then usage, then [DONE].
    text, finish, usage, chunks = stream_chat(
        client, stream_options={"include_usage": True}, **greedy
    )
    check(text == full, f"streamed text differs: {text!r}")
    check(finish == "length", finish)
    check(usage is not None and usage.completion_tokens == 255, usage)
    check(chunks >= 255, f"only {chunks} chunks")
    ok(f"chat.completions (streaming, {chunks} chunks, usage) = greedy reference")

    # The raw server-sent events are OpenAI's: JSON `data:` events, then `data: [DONE]`.
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": ""}],
        temperature=0,
        max_tokens=5,
    ) as raw:
        check(raw.headers["content-type"].startswith("text/event-stream"), raw.headers)
        events = [line for line in raw.iter_lines() if line]
    check(events[-1] == "data: [DONE]", events[-3:])
    payloads = [json.loads(e[len("data: "):]) for e in events[:-1]]
    check(all(e.startswith("data: ") for e in events), events)
    check(payloads[0]["choices"][0]["delta"]["role"] == "assistant", payloads[0])
    check(payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 5,
          payloads[-1])
    check(all(p["object"] == "chat.completion.chunk" for p in payloads), payloads)
    ok("raw SSE: role chunk, deltas, finish, usage chunk, data: [DONE]")

    # Legacy text completions, both ways.
    c = client.completions.create(model=MODEL, prompt="", temperature=0, max_tokens=255)
    check(c.object == "text_completion", c.object)
    check(c.choices[0].text == full, f"completion text differs: {c.choices[0].text!r}")
    streamed = "".join(
        ch.choices[0].text
        for ch in client.completions.create(
            model=MODEL, prompt="", temperature=0, max_tokens=255, stream=True
        )
        if ch.choices
    )
    check(streamed == full, f"streamed completion differs: {streamed!r}")
    ok("completions (non-streaming and streaming) = greedy reference")

    # Unknown model: 404 from the enclave's API, as the SDK's NotFoundError.
    try:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        check(e.status_code == 404 and e.code == "model_not_found", e)
    ok("unknown model -> NotFoundError (model_not_found)")

    # Invalid request: 400 in OpenAI's error shape.
    try:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=5
        )
        raise AssertionError("temperature 5 accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.code == "invalid_value", e)
        check(e.body["param"] == "temperature", e.body)
    ok("invalid request -> BadRequestError (invalid_value)")

    # Abort in the middle of a stream: close it after the first words. The gateway cancels
    # the stream in the enclave (the enclave's log shows the generation stopped; the Rust
    # side checks it), and the next request is served normally.
    before = status(base_url)["requests"]["cancelled"]
    got = ""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": ""}],
        temperature=0,
        stream=True,  # no max_tokens: as long as the context allows
    )
    for chunk in stream:
        if chunk.choices:
            got += chunk.choices[0].delta.content or ""
        if len(got) >= 4:
            break
    stream.close()
    check(reference.startswith(got), got)
    deadline = time.time() + 10
    while status(base_url)["requests"]["cancelled"] <= before and time.time() < deadline:
        time.sleep(0.02)
    check(status(base_url)["requests"]["cancelled"] == before + 1, status(base_url))
    again, _ = chat_text(client, **greedy)
    check(again == full, "request after the abort differs")
    ok(f"abort mid-stream after {got!r}: cancelled at the gateway, next request fine")

    # Ten concurrent streams over the one channel, each correct on its own: greedy ones of
    # different lengths are prefixes of the reference; seeded samples equal what the same
    # request gives alone.
    seeded = lambda i: dict(  # noqa: E731
        messages=[{"role": "user", "content": "Once upon a time"}],
        temperature=1.0,
        seed=1000 + i,
        max_tokens=40,
    )
    alone = {i: chat_text(client, **seeded(i))[0] for i in range(5)}
    check(len(set(alone.values())) == 5, "seeds should give different stories")
    peak_before = status(base_url)["requests"]["peak_active"]
    connects_before = status(base_url)["connects"]

    async def one(aclient, i):
        if i % 2 == 0:
            n = 20 + 17 * i
            kw = dict(messages=[{"role": "user", "content": ""}], temperature=0, max_tokens=n)
        else:
            n = 40
            kw = seeded(i // 2)
        text, finish, usage = "", None, None
        stream = await aclient.chat.completions.create(
            model=MODEL, stream=True, stream_options={"include_usage": True}, **kw
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return i, n, text, finish, usage

    async def burst():
        async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(10)))

    results = asyncio.run(burst())
    lengths = []
    for i, n, text, finish, usage in results:
        check(usage is not None and usage.completion_tokens <= n, (i, usage))
        if i % 2 == 0:
            check(full.startswith(text), f"stream {i}: not a reference prefix: {text!r}")
            check(usage.completion_tokens == n and finish == "length", (i, usage, finish))
            lengths.append(len(text))
        else:
            check(text == alone[i // 2], f"stream {i}: differs from the same request alone")
    check(lengths == sorted(lengths) and len(set(lengths)) == 5, lengths)
    st = status(base_url)
    check(st["requests"]["peak_active"] >= 2 or peak_before >= 2, st["requests"])
    check(st["connects"] == connects_before, "the burst should reuse the channel")
    ok(f"10 concurrent streams, each correct (peak {st['requests']['peak_active']} in flight, "
       f"{st['connects']} channel(s))")

    st = status(base_url)
    check(st["verified"] and st["enclave"]["simulated"], st)
    check(st["requests"]["active"] == 0, st["requests"])
    ok(f"gateway status: {json.dumps(st['requests'])}")


def rejected(base_url, code):
    # Default retries: the gateway tells the SDK not to retry a rejection (x-should-retry).
    client = OpenAI(base_url=base_url, api_key="x")
    calls = [
        ("chat", lambda: client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": SECRET_PROMPT}])),
        ("chat stream", lambda: list(client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": SECRET_PROMPT}], stream=True))),
        ("completion", lambda: client.completions.create(model=MODEL, prompt=SECRET_PROMPT)),
        ("models", lambda: client.models.list()),
    ]
    for name, call in calls:
        started = time.time()
        try:
            call()
            raise AssertionError(f"{name}: succeeded through an unverified enclave")
        except openai.APIStatusError as e:
            check(e.status_code == 502, f"{name}: status {e.status_code}")
            check(e.code == code, f"{name}: code {e.code!r}, expected {code}")
            check(code in str(e), f"{name}: the message must name the code: {e}")
            check("Nothing was sent" in e.message, e.message)
            check(e.response.headers.get("x-should-retry") == "false", e.response.headers)
        check(time.time() - started < 5, f"{name}: the SDK retried a rejection")
        ok(f"{name} -> APIStatusError 502 [{code}]")
    st = status(base_url)
    check(not st["verified"] and st["last_error"]["code"] == code, st)
    ok("gateway status: not verified, last error " + code)


def main():
    mode, base_url, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    print(f"openai {openai.__version__} -> {base_url}", flush=True)
    if mode == "happy":
        with open(arg, encoding="utf-8") as f:
            happy(base_url, f.read())
    elif mode == "rejected":
        rejected(base_url, arg)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
