/** Reading server-sent events from a fetch Response, event by event, as they arrive (parsed by eventsource-parser). */
import { EventSourceParserStream } from 'eventsource-parser/stream';

/** The data of each event of the stream, in order. */
export async function* sseEvents(response: Response): AsyncGenerator<string> {
  const reader = response
    .body!.pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ onError: 'terminate' }))
    .getReader();
  let done = false;
  try {
    while (true) {
      const next = await reader.read();
      if (next.done) {
        done = true;
        return;
      }
      yield next.value.data;
    }
  } finally {
    // A consumer that stops early is done with the response: let go of its connection.
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** All events of a stream, JSON-parsed except the final "[DONE]". */
export async function readAllEvents(response: Response): Promise<(Record<string, any> | '[DONE]')[]> {
  const events: (Record<string, any> | '[DONE]')[] = [];
  for await (const data of sseEvents(response)) events.push(data === '[DONE]' ? data : JSON.parse(data));
  return events;
}
