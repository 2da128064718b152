/**
 * Chat messages -> prompt text. A bundle may carry the checkpoint's own Jinja chat template
 * (tokenizer_config.json's `chat_template`); otherwise flexmem's default, a plain transcript that
 * a model trained on ordinary prose continues naturally:
 *
 *   <system text>
 *
 *   User: <text>
 *   Assistant: <text>
 *   User: <text>
 *   Assistant:
 *
 * With the default template, "\nUser:" ends the assistant's turn (an implicit stop sequence).
 */
import { Template } from '@huggingface/jinja';

export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message.role == 'system' or message.role == 'developer' %}{{ message.content }}\n\n" +
  '{% else %}{{ message.role | capitalize }}: {{ message.content }}\n{% endif %}{% endfor %}' +
  '{% if add_generation_prompt %}Assistant:{% endif %}';

export const DEFAULT_TEMPLATE_STOPS = ['\nUser:'];

export interface ChatMessage {
  role: string;
  content: string | { type: 'text'; text: string }[];
}

const compiled = new Map<string, Template>();

export function renderChat(messages: ChatMessage[], template = DEFAULT_CHAT_TEMPLATE): string {
  let t = compiled.get(template);
  if (!t) {
    t = new Template(template);
    compiled.set(template, t);
  }
  const flat = messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
  }));
  return t.render({ messages: flat, add_generation_prompt: true, bos_token: '', eos_token: '' });
}
