/** Reading server-sent events from a fetch Response, event by event, as they arrive. */
export async function* sseEvents(response: Response): AsyncGenerator<string> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (event.startsWith('data: ')) yield event.slice('data: '.length);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** All events of a stream, JSON-parsed except the final "[DONE]". */
export async function readAllEvents(response: Response): Promise<(Record<string, any> | '[DONE]')[]> {
  const events: (Record<string, any> | '[DONE]')[] = [];
  for await (const data of sseEvents(response)) events.push(data === '[DONE]' ? data : JSON.parse(data));
  return events;
}
