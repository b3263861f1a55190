<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Agent;

use Autoheal\Sdk\Agent\Agent;
use Autoheal\Sdk\Agent\AgentBuilder;
use Autoheal\Sdk\Agent\CommandOutcome;
use Autoheal\Sdk\Apply\CallbackNotifier;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Http\RetryPolicy;
use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Tests\Support\FakeServer;
use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Unit\Http\RecordingSleeper;
use Autoheal\Sdk\Time\FixedClock;
use Autoheal\Sdk\Verify\TrustedRoots;
use PHPUnit\Framework\TestCase;

/** Whole ticks against the fake server and a real shop database. */
abstract class AgentContract extends TestCase
{
    protected Fixtures $f;
    protected FakeServer $server;
    /** @var list<array<string, mixed>> */
    protected array $seen = [];

    abstract protected function shop(): \PDO;

    abstract protected function journal(): Journal;

    abstract protected function typeTheDatabaseRefuses(): string;

    protected function setUp(): void
    {
        $this->f = new Fixtures();
        $this->server = new FakeServer(Fixtures::INSTALL_ID);
        $this->shop()->exec('CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED, amount DECIMAL(10,2))');
        $this->shop()->exec('INSERT INTO wp_molam_orders (id, amount) VALUES (1, 9.99)');
    }

    protected function tearDown(): void
    {
        $this->server->stop();
    }

    protected function agent(): Agent
    {
        return AgentBuilder::create($this->server->url(), FakeServer::KEY)
            ->plugin(new PluginInfo('woocommerce', '1.3.5', 'https://shop.example'))
            ->shopDatabase($this->shop(), TableSelection::prefixed('wp_molam_'))
            ->trustedRoots(TrustedRoots::fromBase64([$this->f->rootBase64()]))
            ->journal($this->journal())
            ->clock(FixedClock::at(Fixtures::NOW))
            ->retries(new RetryPolicy(3, 0.01, 0.05), new RecordingSleeper())
            ->notifier(new CallbackNotifier(function (string $t, string $s, string $m): void {
                $this->seen[] = ['notice' => $t];
            }))
            ->build()
            ->onBlockPlugin(function (bool $blocked, ?string $reason): void {
                $this->seen[] = ['block_plugin' => $blocked];
            })
            ->onRateLimit(function (?int $perMinute): void {
                $this->seen[] = ['rate_limit' => $perMinute];
            })
            ->onNotices(function (array $notices): void {
                $this->seen[] = ['notices' => count($notices)];
            });
    }

    /**
     * Serves the bundle and queues a command for it.
     *
     * @param array<string, mixed> $payload overrides
     * @return array<string, mixed> the signed payload
     */
    protected function queue(array $payload = [], array $manifest = [], ?callable $tamper = null): array
    {
        $bundle = $this->f->bundle($manifest);
        $p = $this->f->payload($bundle, $payload);
        $item = $this->f->item($p);
        if ($tamper !== null) {
            $item = $tamper($item);
        }
        $this->server->serveBundle($p['bundle']['name'], $p['bundle']['version'], $bundle);
        $this->server->queue(Fixtures::json($item));
        return $p;
    }

    /** @return array<string, string> */
    protected function columns(): array
    {
        return Database::dialect($this->shop())->columns($this->shop(), ['wp_molam_orders'])['wp_molam_orders'];
    }

    public function testHealsAMissingColumnThenRollsItBack(): void
    {
        $p = $this->queue();
        $report = $this->agent()->tick();
        self::assertSame([], $report->errors());
        self::assertSame(Fixtures::INSTALL_ID, $report->installationId());
        self::assertCount(1, $report->commands());
        $outcome = $report->commands()[0];
        self::assertSame([$p['id'], CommandOutcome::ACCEPTED, 'ok', true, 1, 'delivered'], [$outcome->id(), $outcome->verdict(), $outcome->reason(), $outcome->success(), $outcome->appliedOperations(), $outcome->ack()]);
        self::assertSame('DECIMAL(10,2)', $this->columns()['merchant_fee']);
        self::assertSame(['success' => true, 'result' => ['plugin_version' => '1.3.5', 'applied_operations' => 1]], $this->server->ack($p['id']));
        self::assertSame($p['sequence'], $this->journal()->lastSequence());
        self::assertSame('1.0.3', $this->journal()->newestBundleVersion('add_missing_column'));
        self::assertSame([], $this->journal()->inbox());
        self::assertSame('DECIMAL(10,2)', $this->server->state()['heartbeats'][0]['state']['tables']['wp_molam_orders']['amount']);

        $rollback = $this->queue(['command_type' => 'rollback']);
        $report = $this->agent()->tick();
        self::assertTrue($report->commands()[0]->success(), (string) $report->commands()[0]->error());
        self::assertArrayNotHasKey('merchant_fee', $this->columns());
        self::assertSame(['success' => true, 'result' => ['plugin_version' => '1.3.5']], $this->server->ack($rollback['id']));
    }

    public function testATamperedCommandIsRefusedAndAckedSo(): void
    {
        $p = $this->queue([], [], static function (array $item): array {
            $payload = (string) base64_decode($item['signed']['payload'], true);
            $item['signed']['payload'] = base64_encode(str_replace('DECIMAL(10,2)', 'DECIMAL(12,2)', $payload));
            return $item;
        });
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::REFUSED, 'signature_invalid', 'delivered'], [$outcome->verdict(), $outcome->reason(), $outcome->ack()]);
        $ack = $this->server->ack($p['id']);
        self::assertSame(false, $ack['success']);
        self::assertSame('refused', $ack['outcome']);
        self::assertSame('signature_invalid', $ack['result']['reason']);
        self::assertArrayNotHasKey('merchant_fee', $this->columns());
        self::assertSame(0, $this->journal()->lastSequence(), 'a refusal spends no sequence');
    }

    public function testAFailedApplyLeavesTheTablesAsTheyWere(): void
    {
        $before = $this->columns();
        $p = $this->queue(['operations' => [
            ['column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)', 'op' => 'add_column', 'table' => 'wp_molam_orders'],
            ['column' => 'broken', 'column_type' => $this->typeTheDatabaseRefuses(), 'op' => 'add_column', 'table' => 'wp_molam_orders'],
        ]]);
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::ACCEPTED, false, 0], [$outcome->verdict(), $outcome->success(), $outcome->appliedOperations()]);
        self::assertSame($before, $this->columns());
        $ack = $this->server->ack($p['id']);
        self::assertFalse($ack['success']);
        self::assertSame(0, $ack['result']['applied_operations']);
        self::assertStringContainsString('operation 1', $ack['result']['error']);
    }

    public function testARedeliveryGetsTheRecordedAckAndIsNotAppliedAgain(): void
    {
        $p = $this->queue();
        $this->agent()->tick();
        $first = $this->server->ack($p['id']);
        // The server lost the ack; after the lease it hands the command out again, with a
        // new sequence and a fresh signature.
        $this->server->update(static function (array $s) use ($p): array {
            unset($s['acks'][$p['id']]);
            return $s;
        });
        $again = $this->f->payload($this->f->bundle(), ['id' => $p['id']]);
        $this->server->queue(Fixtures::json($this->f->item($again)));
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::REDELIVERED, true, 1, 'delivered'], [$outcome->verdict(), $outcome->success(), $outcome->appliedOperations(), $outcome->ack()]);
        self::assertSame($first, $this->server->ack($p['id']));
        self::assertSame('DECIMAL(10,2)', $this->columns()['merchant_fee']);
    }

    public function testAnAckThatDidNotGetThroughIsSentOnTheNextTick(): void
    {
        $p = $this->queue();
        $this->server->fail('POST /api/v1/plugins/autoheal/commands/' . $p['id'] . '/ack', 503, [], 3);
        $report = $this->agent()->tick();
        self::assertSame('pending', $report->commands()[0]->ack());
        self::assertNull($this->server->ack($p['id']));
        self::assertCount(1, $this->journal()->undeliveredAcks());

        $next = $this->agent()->tick()->toArray();
        self::assertSame(1, $next['acks_resent']);
        self::assertSame(['success' => true, 'result' => ['plugin_version' => '1.3.5', 'applied_operations' => 1]], $this->server->ack($p['id']));
        self::assertSame([], $this->journal()->undeliveredAcks());
    }

    public function testAnApplyACrashInterruptedIsUndoneAndAckedFailed(): void
    {
        $id = Fixtures::uuid();
        $ops = [['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)']];
        $snapshot = ['tables' => ['wp_molam_orders' => $this->columns()], 'config' => []];
        $this->journal()->recordAccepted(3, ['add_missing_column' => '1.0.3'], CommandRecord::applying($id, 3, 'apply_patch', $ops, $snapshot));
        // The ALTER ran, then the process died before journaling it.
        $this->shop()->exec(Database::dialect($this->shop())->addColumnSql('wp_molam_orders', 'merchant_fee', 'DECIMAL(10,2)'));

        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::RECOVERED, false, 0, 'delivered'], [$outcome->verdict(), $outcome->success(), $outcome->appliedOperations(), $outcome->ack()]);
        self::assertArrayNotHasKey('merchant_fee', $this->columns());
        $ack = $this->server->ack($id);
        self::assertSame(0, $ack['result']['applied_operations']);
        self::assertStringContainsString('stopped while applying', $ack['result']['error']);
    }

    public function testACommandWhoseBundleIsUnavailableWaitsInTheInbox(): void
    {
        $bundle = $this->f->bundle();
        $p = $this->f->payload($bundle);
        $this->server->queue(Fixtures::json($this->f->item($p)));
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::DEFERRED, 'none'], [$outcome->verdict(), $outcome->ack()]);
        self::assertArrayHasKey($p['id'], $this->journal()->inbox());

        $this->server->serveBundle('add_missing_column', '1.0.3', $bundle);
        $later = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::ACCEPTED, true], [$later->verdict(), $later->success()]);
        self::assertSame([], $this->journal()->inbox());
    }

    public function testABatchIsTakenInSequenceOrder(): void
    {
        $second = $this->f->payload($this->f->bundle(), ['sequence' => 20, 'operations' => [['column' => 'b', 'column_type' => 'INT', 'op' => 'add_column', 'table' => 'wp_molam_orders']]]);
        $first = $this->f->payload($this->f->bundle(), ['sequence' => 10, 'operations' => [['column' => 'a', 'column_type' => 'INT', 'op' => 'add_column', 'table' => 'wp_molam_orders']]]);
        $this->server->serveBundle('add_missing_column', '1.0.3', $this->f->bundle());
        $this->server->queue(Fixtures::json($this->f->item($second)), Fixtures::json($this->f->item($first)));
        $report = $this->agent()->tick();
        self::assertSame([$first['id'], $second['id']], array_map(static fn (CommandOutcome $o): string => $o->id(), $report->commands()));
        self::assertSame([true, true], array_map(static fn (CommandOutcome $o): ?bool => $o->success(), $report->commands()));
        self::assertSame(20, $this->journal()->lastSequence());
    }

    public function testTogglesAndNoticesReachTheCallbacks(): void
    {
        $this->server->update(static function (array $s): array {
            $s['toggles'] = ['block_plugin' => true, 'enable_debug' => false, 'force_update' => false, 'rate_limit' => 30];
            $s['notices'] = [['id' => 'n1', 'priority' => 'low', 'subject' => 's', 'current_version' => '1.3.5', 'target_version' => '1.3.6', 'security' => false, 'created_at' => '2026-12-01T00:00:00Z']];
            return $s;
        });
        $agent = $this->agent();
        $agent->tick();
        self::assertSame([['block_plugin' => true], ['rate_limit' => 30], ['notices' => 1]], $this->seen);
        $agent->acknowledgeNotice('n1');
        self::assertSame(['n1'], $this->server->state()['notice_acks']);
    }

    public function testTicksDoNotOverlap(): void
    {
        $holder = $this->journal();
        self::assertTrue($holder->acquireLock(60));
        try {
            $report = $this->agent()->tick();
            self::assertFalse($report->ran());
            self::assertSame([], $this->server->state()['requests']);
        } finally {
            $holder->releaseLock();
        }
    }

    public function testWithoutAnInstallationIdNothingIsPolled(): void
    {
        $this->server->fail('POST /api/v1/plugins/heartbeat', 401);
        $report = $this->agent()->tick();
        self::assertNull($report->installationId());
        self::assertCount(2, $report->errors());
        self::assertSame(1, count($this->server->state()['requests']));
    }

    public function testACommandForAnotherInstallIsRefused(): void
    {
        $p = $this->queue(['install_id' => Fixtures::uuid()]);
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::REFUSED, 'wrong_install'], [$outcome->verdict(), $outcome->reason()]);
        self::assertSame('refused', $this->server->ack($p['id'])['outcome']);
    }

    public function testAnItemWithoutAnIdIsRefusedWithoutAnAck(): void
    {
        $this->server->queue('{"command_type":"apply_patch","signed":{}}');
        $outcome = $this->agent()->tick()->commands()[0];
        self::assertSame([CommandOutcome::REFUSED, 'malformed', 'rejected'], [$outcome->verdict(), $outcome->reason(), $outcome->ack()]);
        self::assertSame([], $this->server->state()['acks']);
        self::assertSame([], $this->journal()->inbox());
    }
}
