/**
 * `npm run sandbox` (after the build): the simulators, a Node-RED with the pack and the bridge example, and the
 * sandbox page. Stop it with Ctrl-C.
 *
 *   --port N            the sandbox page (default 1881)
 *   --node-red-port N   the Node-RED it starts (default 1880)
 *   --wechat-port N, --cxone-port N   the simulators (default 1882, 1883)
 *   --reset             deploy the example again instead of the flow kept from the last run
 *   --store KIND        the config nodes' store: file (the default), memory or redis (127.0.0.1:6379)
 *   --example NAME      deploy another example of examples/ (e.g. "Keyword auto-reply with hand-over to an agent")
 *   --node-red-url URL  start no Node-RED: use yours (with the pack from the palette); prints the settings to enter
 */
import { Sandbox, type SandboxOptions } from './sandbox';

function parseArgs(argv: string[]): SandboxOptions {
  const o: SandboxOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--port') o.port = Number(next());
    else if (a === '--node-red-port') o.nodeRedPort = Number(next());
    else if (a === '--wechat-port') o.wechatPort = Number(next());
    else if (a === '--cxone-port') o.cxonePort = Number(next());
    else if (a === '--reset') o.reset = true;
    else if (a === '--store') o.store = next();
    else if (a === '--example') o.example = next();
    else if (a === '--node-red-url') o.nodeRedUrl = next();
    else if (a === '--help' || a === '-h') {
      console.log(
        'npm run sandbox [-- --port 1881] [--node-red-port 1880] [--reset] [--store file|memory|redis] [--example NAME] [--node-red-url http://127.0.0.1:1880]',
      );
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  return o;
}

async function main(): Promise<void> {
  const sb = new Sandbox(parseArgs(process.argv.slice(2)));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping the sandbox …');
    sb.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  console.log('Starting the WeChat and CXone simulators and Node-RED (nothing leaves this machine) …');
  try {
    await sb.start();
  } catch (err) {
    console.error(`The sandbox could not start: ${err instanceof Error ? err.message : String(err)}`);
    await sb.stop().catch(() => undefined);
    process.exit(1);
  }
  const line = '─'.repeat(72);
  console.log(`\n${line}`);
  console.log(`  Sandbox page (be the WeChat user and the CXone agent):  ${sb.pageUrl}`);
  console.log(
    sb.opts.nodeRedUrl
      ? `  Your Node-RED (not started by the sandbox):             ${sb.nodeRedUrl}`
      : `  Node-RED editor (the bridge flow, deployed):            ${sb.nodeRedUrl}`,
  );
  console.log(line);
  console.log(`  WeChat API simulator:   ${sb.wechat.url}`);
  console.log(`  CXone simulator:        ${sb.cxone.url}`);
  console.log(`  Webhook (Server URL):   ${sb.webhookUrl}`);
  console.log(`  Integration box URL:    ${sb.boxUrl}`);
  if (sb.opts.nodeRedUrl) {
    console.log('\n  Enter these in the config nodes of your Node-RED (they are also on the sandbox page):');
    for (const [type, fields] of Object.entries(sb.ownNodeRedSettings())) {
      console.log(`  ${type}`);
      for (const [k, v] of Object.entries(fields)) console.log(`    ${k.padEnd(20)} ${v}`);
    }
    console.log(
      '  and tick "allow private network" where the nodes offer it (the simulators are on 127.0.0.1).',
    );
  }
  console.log(`${line}\n  Ctrl-C stops everything.\n`);
}

void main();
