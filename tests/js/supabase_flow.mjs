// supabase-js against a live `rendio serve`: the app's reads and one realtime subscription.
// Usage: node supabase_flow.mjs <base url> <anon key>; prints a JSON summary, exits 1 on failure.
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'
import { randomUUID } from 'node:crypto'

const [url, anonKey] = process.argv.slice(2)
const supabase = createClient(url, anonKey, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: { transport: WebSocket },
})

function check(condition, message) {
  if (!condition) throw new Error(message)
}

async function main() {
  const device = `js-${randomUUID()}`
  const checked = await supabase.functions.invoke('device-check', {
    body: { device_id: device, device_token: `phone-${device}` },
  })
  check(!checked.error, `device-check: ${checked.error}`)
  const { user_id: userId, session } = checked.data
  const signedIn = await supabase.auth.setSession({
    access_token: session.access_token,
    refresh_token: session.refresh_token,
  })
  check(!signedIn.error, `setSession: ${signedIn.error?.message}`)

  const balance = await supabase.from('users').select('credits_remaining').eq('id', userId).single()
  check(!balance.error && balance.data.credits_remaining === 10, `balance: ${JSON.stringify(balance)}`)

  const models = await supabase
    .from('models')
    .select()
    .eq('is_available', true)
    .order('is_featured', { ascending: false })
  check(!models.error && models.data.length > 0, `models: ${JSON.stringify(models.error)}`)

  const none = await supabase.from('video_jobs').select('job_id').maybeSingle()
  check(!none.error && none.data === null, `maybeSingle: ${JSON.stringify(none)}`)

  const heard = []
  const channel = supabase
    .channel('my-jobs')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'video_jobs' }, (change) =>
      heard.push(change),
    )
  await new Promise((resolve, reject) => {
    channel.subscribe((status, error) => {
      if (status === 'SUBSCRIBED') resolve()
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(error ?? new Error(status))
    })
  })

  const local = models.data.find((model) => model.provider === 'local')
  const made = await supabase.functions.invoke('generate-video', {
    body: {
      model_id: local.id,
      prompt: 'a paper boat',
      settings: { duration: 2, aspect_ratio: '16:9', resolution: '360p' },
    },
    headers: { 'Idempotency-Key': randomUUID() },
  })
  check(!made.error, `generate-video: ${made.error}`)
  const jobId = made.data.job_id

  const deadline = Date.now() + 20_000
  while (!heard.some((change) => change.eventType === 'INSERT') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const insert = heard.find((change) => change.eventType === 'INSERT')
  check(insert && insert.new.job_id === jobId, `realtime: ${JSON.stringify(heard)}`)

  const page = await supabase
    .from('video_jobs')
    .select('job_id, status', { count: 'exact' })
    .order('created_at', { ascending: false })
    .range(0, 19)
  check(!page.error && page.count === 1 && page.data[0].job_id === jobId, `history: ${JSON.stringify(page)}`)

  const refused = await supabase.from('users').update({ credits_remaining: 999 }).eq('id', userId)
  check(refused.error?.code === '42501', `write: ${JSON.stringify(refused)}`)

  await supabase.removeAllChannels()
  console.log(JSON.stringify({ ok: true, models: models.data.length, heard: heard.length, jobId }))
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error?.stack ?? String(error))
    process.exit(1)
  },
)
