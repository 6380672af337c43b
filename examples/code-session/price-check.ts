import { defineSession, z } from 'session-framework';

/** Reads a product's price and fails the session when it is above the limit. */
export default defineSession({
  name: 'price-check',
  input: z.object({
    url: z.url(),
    selector: z.string().default('.price'),
    maxPrice: z.number().positive(),
  }),
  timeoutMs: 30_000,
  async run({ page, input, log }) {
    await page.goto(input.url);
    const text = ((await page.locator(input.selector).first().textContent()) ?? '').trim();
    const price = Number(text.replace(/[^0-9.]/g, ''));
    if (!text || !Number.isFinite(price)) throw new Error(`no price in ${JSON.stringify(text)}`);
    log('price read', { price });
    if (price > input.maxPrice) throw new Error(`price ${price} is above ${input.maxPrice}`);
    return { price, text };
  },
});
