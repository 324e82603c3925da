import { Field, ObjectType } from 'type-graphql';
import { PageInfo, type LazyCount } from '../../shared/graphql/connection';
import { MessageType } from '../message/message.types';

@ObjectType('SearchHit')
export class SearchHitType {
  @Field(() => MessageType) message!: MessageType;
  @Field({ description: 'The message text around the matched words, HTML-escaped, each matched word wrapped in <mark></mark>.' })
  snippet!: string;
}

@ObjectType('SearchHitEdge')
export class SearchHitEdge {
  @Field() cursor!: string;
  @Field(() => SearchHitType) node!: SearchHitType;
}

/** Best match first; totalCount (every visible match) is counted only when a client asks for it. */
@ObjectType('SearchHitConnection')
export class SearchHitConnection {
  @Field(() => [SearchHitEdge]) edges!: SearchHitEdge[];
  @Field(() => PageInfo) pageInfo!: PageInfo;
  totalCount!: LazyCount;
}
