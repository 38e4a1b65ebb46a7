/**
 * Build-time configuration (Flex plugins read `FLEX_APP_*` variables from `.env` or the
 * environment when `twilio flex:plugins:build`/`deploy` runs).
 */
export const RELAY_URL: string = process.env.FLEX_APP_RELAY_URL || 'http://127.0.0.1:8080';
export const STREAM_TEMPLATE: string = process.env.FLEX_APP_SYNC_STREAM_TEMPLATE || 'FLEX_ASSIST_{call_sid}';
