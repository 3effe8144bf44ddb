// Who may do what on a SASL_SSL Kafka cluster, and the topics the services use, set up by the
// super user before the services start.
import { AclOperations, AclPermissionTypes, Admin, ResourcePatternTypes, ResourceTypes, type AclOperationValue } from '@platformatic/kafka';
import { baseClientOptions, type KafkaSettings } from '../../src/platform/kafka/settings.ts';
import { ensureTopic, type TopicDurability } from '../../src/platform/kafka/topics.ts';

export interface ServiceAccess {
  /** The event topic: only summa-relay writes it, summa-totals reads it. */
  topic: string;
  /** summa-totals writes the records it cannot apply here. */
  deadLetterTopic: string;
  /** The totals services' consumer group. */
  groupId: string;
  /** Partitions of the topics when they are created (default 6). */
  partitions?: number;
}

type Acl = Parameters<Admin['createAcls']>[0]['creations'][number];

/**
 * The ACLs of the service users; whatever is not listed is denied (StandardAuthorizer with no
 * allow.everyone.if.no.acl.found). DESCRIBE_CONFIGS lets a service check at start-up that a topic is
 * as durable as configured (src/platform/service/service-topics.ts). No user may CREATE: the
 * topics are created here by the super user, so a service cannot make a topic weaker than
 * intended, nor recreate a deleted event topic with other settings. Idempotent producing needs no
 * IDEMPOTENT_WRITE on the cluster: since Kafka 2.8 WRITE on a topic allows it.
 */
export function serviceAcls(access: ServiceAccess): Acl[] {
  const topic = (name: string, principal: string, ...operations: AclOperationValue[]) =>
    operations.map((operation) => acl(ResourceTypes.TOPIC, name, principal, operation));
  return [
    ...topic(access.topic, 'User:summa-relay', AclOperations.WRITE, AclOperations.DESCRIBE, AclOperations.DESCRIBE_CONFIGS),
    ...topic(access.topic, 'User:summa-totals', AclOperations.READ, AclOperations.DESCRIBE, AclOperations.DESCRIBE_CONFIGS),
    acl(ResourceTypes.GROUP, access.groupId, 'User:summa-totals', AclOperations.READ),
    ...topic(access.deadLetterTopic, 'User:summa-totals', AclOperations.WRITE, AclOperations.DESCRIBE, AclOperations.DESCRIBE_CONFIGS),
  ];
}

function acl(resourceType: Acl['resourceType'], resourceName: string, principal: string, operation: AclOperationValue): Acl {
  return {
    resourceType,
    resourceName,
    resourcePatternType: ResourcePatternTypes.LITERAL,
    principal,
    host: '*',
    operation,
    permissionType: AclPermissionTypes.ALLOW,
  };
}

/**
 * As the super user (`admin`): creates the services' topics unless they exist (the event topic
 * with replication chosen by the cluster's size: 3 replicas and min.insync.replicas 2 on three
 * brokers), and, when `withAcls`, grants serviceAcls. Safe to repeat.
 */
export async function setUpServiceAccess(admin: KafkaSettings, access: ServiceAccess, { withAcls }: { withAcls: boolean }): Promise<TopicDurability[]> {
  const spec = { partitions: access.partitions ?? 6 };
  const topics = [await ensureTopic(admin, access.topic, spec), await ensureTopic(admin, access.deadLetterTopic, spec)];
  if (withAcls) {
    const client = new Admin(baseClientOptions(admin));
    try {
      await client.createAcls({ creations: serviceAcls(access) });
    } finally {
      await client.close().catch(() => {});
    }
  }
  return topics;
}
